/*
 * socket_tcp_last_ack (CRIU's socket-tcp-last-ack and socket-tcp-closing
 * kind, both ends in the tree, on loopback): two connections whose ends
 * both shut down writing, each end's FIN queued behind a counter its
 * peer has not read (small receive buffers, large send buffers: the data
 * and the FIN stay unsent):
 *   "last": its peer shut down first (the peer's FIN received), then it
 *   did: LAST_ACK; its peer FIN_WAIT2.
 *   "closing": it shut down first, then read its peer's counter and FIN:
 *   CLOSING; its peer FIN_WAIT2.
 * With argv[1] "reset", a third connection is reset by its peer (SO_LINGER
 * 0) after the peer's bytes arrived: closed, the bytes still queued and the
 * reset not reported yet.
 * At SIGTERM: the states are as they were; "last" and "closing" read end of
 * file; each peer reads the whole counter, then end of file, and every end
 * closes (TIME_WAIT is held by the kernel apart: the sockets read CLOSE);
 * the reset one reads its bytes, then its error ECONNRESET, then end of
 * file, and a write to it fails (EPIPE).
 */
#include "zdtm_tcp.h"
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#define SMALL 4096
#define LARGE (256 << 10)
#define RESET_BYTES 300

/* Gives socket fd a small receive buffer and a large send buffer: what a
 * peer writes until the kernel takes no more stays mostly unsent, however
 * the receiver packs its queue, and a FIN queued behind it with it. */
static void buffers(int fd)
{
	int small = SMALL, large = LARGE;

	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)) ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &large, sizeof(large)))
		zdtm_fail("buffer sizes: %s", strerror(errno));
}

/* A connected pair over loopback (the listener's buffer sizes go to the
 * accepted end). */
static void pair(int l, struct sockaddr_in *addr, int *a, int *b)
{
	*a = socket(AF_INET, SOCK_STREAM, 0);
	if (*a < 0)
		zdtm_fail("socket: %s", strerror(errno));
	buffers(*a);
	if (connect(*a, (struct sockaddr *)addr, sizeof(*addr)) || (*b = accept(l, NULL, NULL)) < 0)
		zdtm_fail("connecting: %s", strerror(errno));
}

/* Writes the counter (seed `seed`) until the kernel takes no more; returns
 * how many bytes it took. */
static size_t fill(int fd, unsigned seed)
{
	unsigned char buf[512];
	size_t sent = 0;

	if (fcntl(fd, F_SETFL, O_NONBLOCK))
		zdtm_fail("F_SETFL: %s", strerror(errno));
	for (;;) {
		for (size_t i = 0; i < sizeof(buf); i++)
			buf[i] = zdtm_pattern(sent + i, seed);
		ssize_t w = send(fd, buf, sizeof(buf), MSG_NOSIGNAL);
		if (w < 0 && errno == EAGAIN) {
			/* Once more after the window settles. */
			zdtm_sleep_ms(50);
			w = send(fd, buf, sizeof(buf), MSG_NOSIGNAL);
			if (w < 0 && errno == EAGAIN)
				break;
		}
		if (w <= 0)
			zdtm_fail("send: %s", strerror(errno));
		sent += (size_t)w;
	}
	if (fcntl(fd, F_SETFL, 0))
		zdtm_fail("F_SETFL: %s", strerror(errno));
	return sent;
}

int main(int argc, char **argv)
{
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(addr);
	struct linger hard = { 1, 0 };
	int reset = argc > 1 && !strcmp(argv[1], "reset");
	int l, last, last_peer, closing, closing_peer, rs = -1, rs_peer;
	size_t last_sent, closing_sent, peer_sent;
	unsigned char buf[RESET_BYTES];

	zdtm_init();
	l = socket(AF_INET, SOCK_STREAM, 0);
	if (l >= 0)
		buffers(l);
	if (l < 0 || bind(l, (struct sockaddr *)&addr, sizeof(addr)) || listen(l, 8) ||
	    getsockname(l, (struct sockaddr *)&addr, &len))
		zdtm_fail("listener: %s", strerror(errno));

	/* LAST_ACK: the peer shuts down first, then "last", its counter
	 * unread. */
	pair(l, &addr, &last, &last_peer);
	if (shutdown(last_peer, SHUT_WR))
		zdtm_fail("shutdown: %s", strerror(errno));
	zdtm_wait_tcp_state(last, TCP_CLOSE_WAIT, "last before its shutdown");
	last_sent = fill(last, 1);
	if (shutdown(last, SHUT_WR))
		zdtm_fail("shutdown: %s", strerror(errno));
	zdtm_wait_tcp_state(last, TCP_LAST_ACK, "last");

	/* CLOSING: both fill each other and shut down; "closing" then reads
	 * its peer's counter and FIN while its own FIN waits unsent. */
	pair(l, &addr, &closing, &closing_peer);
	closing_sent = fill(closing, 2);
	peer_sent = fill(closing_peer, 3);
	if (shutdown(closing, SHUT_WR) || shutdown(closing_peer, SHUT_WR))
		zdtm_fail("shutdown: %s", strerror(errno));
	zdtm_recv_pattern(closing, peer_sent, 3, "closing reading its peer");
	zdtm_wait_tcp_state(closing, TCP_CLOSING, "closing");
	zdtm_wait_tcp_state(closing_peer, TCP_FIN_WAIT2, "closing's peer");

	if (reset) {
		/* Reset by its peer with bytes queued, the error not read. */
		pair(l, &addr, &rs, &rs_peer);
		for (size_t i = 0; i < RESET_BYTES; i++)
			buf[i] = zdtm_pattern(i, 4);
		if (send(rs_peer, buf, RESET_BYTES, 0) != RESET_BYTES)
			zdtm_fail("send: %s", strerror(errno));
		for (int i = 0, n = 0; ioctl(rs, FIONREAD, &n) == 0 && n < RESET_BYTES; i++) {
			if (i == 500)
				zdtm_fail("the bytes to reset never came");
			zdtm_sleep_ms(10);
		}
		if (setsockopt(rs_peer, SOL_SOCKET, SO_LINGER, &hard, sizeof(hard)) ||
		    close(rs_peer))
			zdtm_fail("resetting: %s", strerror(errno));
		zdtm_wait_tcp_state(rs, TCP_CLOSE, "reset");
	}

	zdtm_ready();
	zdtm_wait_stop();

	if (zdtm_tcp_state(last) != TCP_LAST_ACK)
		zdtm_fail("last: state %d, not LAST_ACK", zdtm_tcp_state(last));
	if (zdtm_tcp_state(closing) != TCP_CLOSING)
		zdtm_fail("closing: state %d, not CLOSING", zdtm_tcp_state(closing));
	zdtm_expect_eof(last, "last");
	zdtm_expect_eof(closing, "closing");
	zdtm_recv_pattern(last_peer, last_sent, 1, "last's peer");
	zdtm_recv_pattern(closing_peer, closing_sent, 2, "closing's peer");
	zdtm_wait_tcp_state(last_peer, TCP_CLOSE, "last's peer after the FIN");
	zdtm_wait_tcp_state(closing_peer, TCP_CLOSE, "closing's peer after the FIN");
	zdtm_expect_eof(last_peer, "last's peer");
	zdtm_expect_eof(closing_peer, "closing's peer");
	zdtm_wait_tcp_state(last, TCP_CLOSE, "last once acknowledged");
	zdtm_wait_tcp_state(closing, TCP_CLOSE, "closing once acknowledged");
	if (reset) {
		if (zdtm_tcp_state(rs) != TCP_CLOSE)
			zdtm_fail("reset: state %d, not CLOSE", zdtm_tcp_state(rs));
		zdtm_recv_pattern(rs, RESET_BYTES, 4, "reset");
		if (recv(rs, buf, 1, MSG_DONTWAIT) != -1 || errno != ECONNRESET)
			zdtm_fail("reset: no ECONNRESET after the bytes (%s)", strerror(errno));
		zdtm_expect_eof(rs, "reset after its error");
		/* As CRIU's socket-tcp-reseted: it cannot be written to. */
		if (send(rs, buf, 1, MSG_NOSIGNAL) != -1 || errno != EPIPE)
			zdtm_fail("reset: a write did not fail with EPIPE (%s)", strerror(errno));
	}
	zdtm_pass();
}
