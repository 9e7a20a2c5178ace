/*
 * Unix sockets whose peer has closed (the JVM holds one): a stream socket
 * whose peer wrote 3000 bytes and closed (reads return them, then 0); a
 * seqpacket socket whose peer sent 2 messages and closed while a message
 * sent to it was unread (ECONNRESET, then the messages, then 0); a
 * datagram socket whose peer sent 2 datagrams and closed (they come out,
 * then a send fails with ECONNREFUSED); and a stream socket whose peer
 * was held by a child that wrote and exited (a process outside the tree
 * by checkpoint time). At SIGTERM each reads as it did before.
 */
#include "zdtm.h"
#include <sys/socket.h>
#include <sys/wait.h>

#define BYTES 3000

static void fill(char *buf, size_t len, char seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (char)(seed + i % 29);
}

/* Receives exactly one message of `len` bytes filled from `seed`. */
static void expect(int fd, size_t len, char seed, const char *what)
{
	char buf[BYTES], want[BYTES];
	ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);

	if (n != (ssize_t)len)
		zdtm_fail("%s: got %zd bytes instead of %zu (%s)", what, n, len,
			  n < 0 ? strerror(errno) : "");
	fill(want, len, seed);
	if (memcmp(buf, want, len))
		zdtm_fail("%s: the bytes differ", what);
}

int main(int argc, char **argv)
{
	int st[2], sq[2], dg[2], ch[2];
	char buf[BYTES];
	pid_t child;

	(void)argc;
	(void)argv;
	zdtm_init();
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, st) || socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sq) ||
	    socketpair(AF_UNIX, SOCK_DGRAM, 0, dg) || socketpair(AF_UNIX, SOCK_STREAM, 0, ch))
		zdtm_fail("socketpair: %s", strerror(errno));
	fill(buf, BYTES, 'a');
	if (write(st[1], buf, BYTES) != BYTES)
		zdtm_fail("stream: %s", strerror(errno));
	close(st[1]);

	fill(buf, 100, 'k');
	if (send(sq[1], buf, 100, 0) != 100)
		zdtm_fail("seqpacket: %s", strerror(errno));
	fill(buf, 7, 'm');
	if (send(sq[1], buf, 7, 0) != 7 || send(sq[0], "x", 1, 0) != 1)
		zdtm_fail("seqpacket: %s", strerror(errno));
	close(sq[1]); /* with "x" unread: sq[0] gets ECONNRESET */

	for (int i = 0; i < 2; i++) {
		fill(buf, 10 + i, (char)('0' + i));
		if (send(dg[1], buf, 10 + i, 0) != 10 + i)
			zdtm_fail("datagram %d: %s", i, strerror(errno));
	}
	close(dg[1]);

	child = fork();
	if (child < 0)
		zdtm_fail("fork: %s", strerror(errno));
	if (child == 0) {
		close(ch[0]);
		fill(buf, 50, 'C');
		_exit(write(ch[1], buf, 50) == 50 ? 0 : 1);
	}
	close(ch[1]);
	if (waitpid(child, NULL, 0) != child)
		zdtm_fail("waitpid: %s", strerror(errno));
	zdtm_ready();
	zdtm_wait_stop();

	size_t have = 0;
	char want[BYTES];
	while (have < BYTES) {
		ssize_t n = recv(st[0], buf + have, BYTES - have, MSG_DONTWAIT);
		if (n <= 0)
			zdtm_fail("stream: %zu of %d bytes came out (%zd, %s)", have, BYTES, n,
				  n < 0 ? strerror(errno) : "end of file");
		have += (size_t)n;
	}
	fill(want, BYTES, 'a');
	if (memcmp(buf, want, BYTES))
		zdtm_fail("stream: the bytes differ");
	zdtm_expect_eof(st[0], "stream");
	if (send(st[0], "z", 1, MSG_NOSIGNAL) != -1 || errno != EPIPE)
		zdtm_fail("stream: a send to the closed peer did not fail with EPIPE");

	/* A seqpacket read reports the pending error before the messages. */
	if (recv(sq[0], buf, 1, MSG_DONTWAIT) != -1 || errno != ECONNRESET)
		zdtm_fail("seqpacket: no ECONNRESET (%s)", strerror(errno));
	expect(sq[0], 100, 'k', "seqpacket");
	expect(sq[0], 7, 'm', "seqpacket");
	zdtm_expect_eof(sq[0], "seqpacket");

	expect(dg[0], 10, '0', "datagram");
	expect(dg[0], 11, '1', "datagram");
	if (recv(dg[0], buf, 1, MSG_DONTWAIT) != -1 || errno != EAGAIN)
		zdtm_fail("datagram: more than was queued");
	if (send(dg[0], "z", 1, MSG_DONTWAIT) != -1 || errno != ECONNREFUSED)
		zdtm_fail("datagram: a send to the closed peer did not fail with ECONNREFUSED (%s)",
			  strerror(errno));

	expect(ch[0], 50, 'C', "the exited child's stream");
	zdtm_expect_eof(ch[0], "the exited child's stream");
	zdtm_pass();
}
