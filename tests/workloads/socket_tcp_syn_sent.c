/*
 * socket_tcp_syn_sent (CRIU's socket-tcp-syn-sent, both ends in the tree,
 * on loopback, without a firewall rule): a non-blocking connect() still
 * waiting for its peer (SYN_SENT) at any checkpoint. Its SYNs are dropped
 * by a listener of the tree whose accept queue is full: the listener has
 * a backlog of 0 and holds one connection not accepted yet, whose client
 * end was then closed with a reset (SO_LINGER 0), so that no fd of the
 * tree refers to it.
 *
 * At SIGTERM: the socket has its local port (still connecting, or
 * connected already where the restored listener's queue was empty); the
 * listener's queue is drained (its dead
 * connection accepted, if it is still there), then the connect completes
 * once a retransmitted SYN reaches the listener: the connection is
 * accepted (its peer is the connecting socket's port) and a byte goes
 * each way.
 */
#include "zdtm_tcp.h"
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

/* How long the connect may take after SIGTERM: SYNs are retransmitted
 * after 1, 2, 4, 8 ... seconds. */
#define CONNECT_WITHIN_MS 40000

static unsigned short port_of(int fd, int peer)
{
	struct sockaddr_in a;
	socklen_t len = sizeof(a);

	if ((peer ? getpeername(fd, (struct sockaddr *)&a, &len)
		  : getsockname(fd, (struct sockaddr *)&a, &len)))
		zdtm_fail("%s: %s", peer ? "getpeername" : "getsockname", strerror(errno));
	return ntohs(a.sin_port);
}

int main(void)
{
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(addr);
	struct linger hard = { 1, 0 };
	struct pollfd pfd;
	int l, filler, s, accepted = -1, err = -1;
	unsigned short local, listener_port;
	double deadline;
	char c;

	zdtm_init();
	l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&addr, sizeof(addr)) || listen(l, 0) ||
	    getsockname(l, (struct sockaddr *)&addr, &len))
		zdtm_fail("listener: %s", strerror(errno));
	listener_port = ntohs(addr.sin_port);

	/* One connection fills the queue; its client end goes away. */
	filler = socket(AF_INET, SOCK_STREAM, 0);
	if (filler < 0 || connect(filler, (struct sockaddr *)&addr, sizeof(addr)))
		zdtm_fail("filling the queue: %s", strerror(errno));
	zdtm_sleep_ms(50);
	if (setsockopt(filler, SOL_SOCKET, SO_LINGER, &hard, sizeof(hard)) || close(filler))
		zdtm_fail("resetting the filler: %s", strerror(errno));

	s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (s < 0)
		zdtm_fail("socket: %s", strerror(errno));
	if (connect(s, (struct sockaddr *)&addr, sizeof(addr)) == 0 || errno != EINPROGRESS)
		zdtm_fail("connect did not wait: %s", strerror(errno));
	local = port_of(s, 0);
	/* Its first SYN was dropped: still connecting. */
	zdtm_sleep_ms(100);
	if (zdtm_tcp_state(s) != TCP_SYN_SENT)
		zdtm_fail("state %d, not SYN_SENT", zdtm_tcp_state(s));

	zdtm_ready();
	zdtm_wait_stop();

	if (port_of(s, 0) != local)
		zdtm_fail("local port %u, was %u", port_of(s, 0), local);
	if (zdtm_tcp_state(s) != TCP_SYN_SENT && zdtm_tcp_state(s) != TCP_ESTABLISHED)
		zdtm_fail("state %d after the checkpoint", zdtm_tcp_state(s));

	/* Accept until the connecting socket's connection comes (the dead
	 * one first, where it is still queued). */
	deadline = zdtm_now() + CONNECT_WITHIN_MS / 1000.0;
	while (accepted < 0) {
		int a = accept(l, NULL, NULL);
		if (a >= 0 && zdtm_tcp_state(a) == TCP_ESTABLISHED && port_of(a, 1) == local) {
			accepted = a;
			break;
		}
		if (a >= 0) {
			close(a);
			continue;
		}
		if (errno != EAGAIN && errno != EINTR)
			zdtm_fail("accept: %s", strerror(errno));
		if (zdtm_now() > deadline)
			zdtm_fail("no connection accepted within %d ms (state %d)", CONNECT_WITHIN_MS,
				  zdtm_tcp_state(s));
		zdtm_sleep_ms(10);
	}

	pfd.fd = s;
	pfd.events = POLLOUT;
	if (poll(&pfd, 1, 5000) != 1)
		zdtm_fail("the connect did not complete (state %d)", zdtm_tcp_state(s));
	len = sizeof(err);
	if (getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len) || err)
		zdtm_fail("the connect failed: %s", strerror(err));
	if (port_of(s, 1) != listener_port)
		zdtm_fail("peer port %u, not the listener's %u", port_of(s, 1), listener_port);
	if (fcntl(s, F_SETFL, 0))
		zdtm_fail("F_SETFL: %s", strerror(errno));

	c = 5;
	if (write(s, &c, 1) != 1)
		zdtm_fail("write to the listener's end: %s", strerror(errno));
	c = 0;
	if (read(accepted, &c, 1) != 1 || c != 5)
		zdtm_fail("read on the accepted end: %s", strerror(errno));
	c = 6;
	if (write(accepted, &c, 1) != 1)
		zdtm_fail("write to the connecting end: %s", strerror(errno));
	c = 0;
	if (read(s, &c, 1) != 1 || c != 6)
		zdtm_fail("read on the connecting end: %s", strerror(errno));
	zdtm_pass();
}
