/*
 * Listening TCP and bound UDP sockets on loopback: a TCP socket listening
 * on 127.0.0.1 (port chosen by the kernel) with SO_REUSEADDR and
 * TCP_NODELAY, an IPv6-only TCP socket listening on ::1, and a UDP socket
 * bound to 127.0.0.1 (O_NONBLOCK). At SIGTERM: the sockets keep their
 * ports and options, each listener accepts a new connection made by the
 * program itself, and the UDP socket receives a datagram sent now.
 */
#include "zdtm.h"
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

static int opt(int fd, int level, int name)
{
	int v = -1;
	socklen_t len = sizeof v;

	if (getsockopt(fd, level, name, &v, &len))
		zdtm_fail("getsockopt %d/%d: %s", level, name, strerror(errno));
	return v;
}

static void bound(int fd, struct sockaddr_storage *ss)
{
	socklen_t len = sizeof *ss;

	if (getsockname(fd, (struct sockaddr *)ss, &len))
		zdtm_fail("getsockname: %s", strerror(errno));
}

/* Connects to the listener `fd` at `ss`, accepts, and exchanges a byte. */
static void accepts(int fd, struct sockaddr_storage *ss, const char *what)
{
	int cl = socket(ss->ss_family, SOCK_STREAM, 0), acc;
	socklen_t len = ss->ss_family == AF_INET ? sizeof(struct sockaddr_in)
						 : sizeof(struct sockaddr_in6);
	char c = 0;

	if (cl < 0 || connect(cl, (struct sockaddr *)ss, len))
		zdtm_fail("%s: connect: %s", what, strerror(errno));
	acc = accept(fd, NULL, NULL);
	if (acc < 0)
		zdtm_fail("%s: accept: %s", what, strerror(errno));
	if (send(cl, "t", 1, 0) != 1 || recv(acc, &c, 1, 0) != 1 || c != 't')
		zdtm_fail("%s: the accepted connection carries no data", what);
	close(acc);
	close(cl);
}

int main(void)
{
	int tcp, tcp6, udp, tx, on = 1;
	struct sockaddr_in a4 = { .sin_family = AF_INET };
	struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	struct sockaddr_storage tcp_at, tcp6_at, udp_at, now;
	char c = 0;

	zdtm_init();
	a4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	tcp = socket(AF_INET, SOCK_STREAM, 0);
	if (tcp < 0 || setsockopt(tcp, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) ||
	    setsockopt(tcp, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) ||
	    bind(tcp, (struct sockaddr *)&a4, sizeof a4) || listen(tcp, 8))
		zdtm_fail("tcp: %s", strerror(errno));
	tcp6 = socket(AF_INET6, SOCK_STREAM, 0);
	if (tcp6 < 0 || setsockopt(tcp6, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on) ||
	    bind(tcp6, (struct sockaddr *)&a6, sizeof a6) || listen(tcp6, 3))
		zdtm_fail("tcp6: %s", strerror(errno));
	udp = socket(AF_INET, SOCK_DGRAM, 0);
	if (udp < 0 || bind(udp, (struct sockaddr *)&a4, sizeof a4) ||
	    fcntl(udp, F_SETFL, O_NONBLOCK))
		zdtm_fail("udp: %s", strerror(errno));
	bound(tcp, &tcp_at);
	bound(tcp6, &tcp6_at);
	bound(udp, &udp_at);
	zdtm_ready();
	zdtm_wait_stop();

	bound(tcp, &now);
	if (memcmp(&now, &tcp_at, sizeof(struct sockaddr_in)))
		zdtm_fail("the TCP listener moved to another address or port");
	bound(tcp6, &now);
	if (memcmp(&now, &tcp6_at, sizeof(struct sockaddr_in6)))
		zdtm_fail("the TCP6 listener moved to another address or port");
	bound(udp, &now);
	if (memcmp(&now, &udp_at, sizeof(struct sockaddr_in)))
		zdtm_fail("the UDP socket moved to another address or port");
	if (!opt(tcp, SOL_SOCKET, SO_ACCEPTCONN) || !opt(tcp6, SOL_SOCKET, SO_ACCEPTCONN))
		zdtm_fail("a TCP socket no longer listens");
	if (!opt(tcp, SOL_SOCKET, SO_REUSEADDR) || !opt(tcp, IPPROTO_TCP, TCP_NODELAY))
		zdtm_fail("the TCP listener lost SO_REUSEADDR or TCP_NODELAY");
	if (opt(tcp6, SOL_SOCKET, SO_REUSEADDR) || !opt(tcp6, IPPROTO_IPV6, IPV6_V6ONLY))
		zdtm_fail("the TCP6 listener's SO_REUSEADDR or IPV6_V6ONLY changed");
	if (!(fcntl(udp, F_GETFL) & O_NONBLOCK) || (fcntl(tcp, F_GETFL) & O_NONBLOCK))
		zdtm_fail("O_NONBLOCK moved");
	accepts(tcp, &tcp_at, "tcp");
	accepts(tcp6, &tcp6_at, "tcp6");

	if (recv(udp, &c, 1, 0) != -1 || errno != EAGAIN)
		zdtm_fail("the UDP socket holds a datagram nobody sent");
	tx = socket(AF_INET, SOCK_DGRAM, 0);
	if (tx < 0 || sendto(tx, "u", 1, 0, (struct sockaddr *)&udp_at, sizeof a4) != 1)
		zdtm_fail("sending to the UDP socket: %s", strerror(errno));
	for (int i = 0; i < 1000 && recv(udp, &c, 1, 0) != 1; i++)
		zdtm_sleep_ms(1);
	if (c != 'u')
		zdtm_fail("the UDP socket does not receive");
	zdtm_pass();
}
