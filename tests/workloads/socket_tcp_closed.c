/*
 * socket_tcp_closed (CRIU's socket-tcp-closed and socket-tcp-close0 kind):
 * TCP sockets whose connection ended are kept open: one reset by its peer
 * (its error already read), one closed both ways (the peer closed, then
 * it shut down its side: LAST_ACK, then CLOSE), and one never connected.
 * At SIGTERM: the first two are still closed sockets that read
 * end-of-file, poll POLLIN|POLLHUP|POLLRDHUP and refuse to send (EPIPE);
 * the never connected one still reads ENOTCONN; the listener still
 * accepts a new connection.
 */
#include "zdtm_tcp.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>

static void check_ended(int fd, const char *what)
{
	char c;
	struct pollfd p = { .fd = fd, .events = POLLIN | POLLOUT | POLLRDHUP };
	ssize_t n;

	if (zdtm_tcp_state(fd) != TCP_CLOSE)
		zdtm_fail("%s: state %d, not CLOSE", what, zdtm_tcp_state(fd));
	n = recv(fd, &c, 1, MSG_DONTWAIT);
	if (n != 0)
		zdtm_fail("%s: recv gave %zd (%s), not end-of-file", what, n,
			  n < 0 ? strerror(errno) : "data");
	if (poll(&p, 1, 0) != 1 || !(p.revents & POLLHUP) || !(p.revents & POLLIN) ||
	    !(p.revents & POLLRDHUP))
		zdtm_fail("%s: poll revents %#x", what, p.revents);
	if (send(fd, "x", 1, MSG_DONTWAIT | MSG_NOSIGNAL) != -1 || errno != EPIPE)
		zdtm_fail("%s: send did not fail with EPIPE", what);
}

int main(void)
{
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(addr);
	struct linger hard = { 1, 0 };
	int one = 1;
	int l, reset, reset_peer, ended, ended_peer, fresh, again, peer;
	char c;

	zdtm_init();
	signal(SIGPIPE, SIG_IGN);
	l = socket(AF_INET, SOCK_STREAM, 0);
	/*
	 * The peer of "ended" closes first: its TIME_WAIT holds the
	 * listener's port, which the restored listener binds again.
	 */
	if (l < 0 || setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) || bind(l, (struct sockaddr *)&addr, sizeof(addr)) || listen(l, 8) ||
	    getsockname(l, (struct sockaddr *)&addr, &len))
		zdtm_fail("listener: %s", strerror(errno));

	/* Reset by its peer; the error read. */
	reset = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(reset, (struct sockaddr *)&addr, sizeof(addr)) ||
	    (reset_peer = accept(l, NULL, NULL)) < 0 ||
	    setsockopt(reset_peer, SOL_SOCKET, SO_LINGER, &hard, sizeof(hard)) || close(reset_peer))
		zdtm_fail("reset connection: %s", strerror(errno));
	zdtm_wait_tcp_state(reset, TCP_CLOSE, "reset");
	if (recv(reset, &c, 1, MSG_DONTWAIT) != -1 || errno != ECONNRESET)
		zdtm_fail("reset: no ECONNRESET");

	/* Closed both ways: the peer closes, then it shuts down its side. */
	ended = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(ended, (struct sockaddr *)&addr, sizeof(addr)) ||
	    (ended_peer = accept(l, NULL, NULL)) < 0 || close(ended_peer))
		zdtm_fail("ended connection: %s", strerror(errno));
	for (int i = 0; i < 500 && zdtm_tcp_state(ended) != TCP_CLOSE_WAIT; i++)
		zdtm_sleep_ms(10);
	if (shutdown(ended, SHUT_WR))
		zdtm_fail("shutdown: %s", strerror(errno));
	zdtm_wait_tcp_state(ended, TCP_CLOSE, "ended");

	fresh = socket(AF_INET, SOCK_STREAM, 0);
	if (fresh < 0)
		zdtm_fail("socket: %s", strerror(errno));
	check_ended(reset, "reset");
	check_ended(ended, "ended");
	zdtm_ready();
	zdtm_wait_stop();

	check_ended(reset, "reset");
	check_ended(ended, "ended");
	if (zdtm_tcp_state(fresh) != TCP_CLOSE || recv(fresh, &c, 1, MSG_DONTWAIT) != -1 ||
	    errno != ENOTCONN)
		zdtm_fail("the never connected socket does not read ENOTCONN");
	again = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(again, (struct sockaddr *)&addr, sizeof(addr)) ||
	    (peer = accept(l, NULL, NULL)) < 0)
		zdtm_fail("the listener does not accept: %s", strerror(errno));
	zdtm_pass();
}
