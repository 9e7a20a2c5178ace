/*
 * A TCP connection to a peer outside the tree (the test, on loopback):
 * listens on 127.0.0.1 (port chosen by the kernel, written to DIR/port),
 * prints READY, accepts the test's connection and writes a byte counter
 * (pattern seed 1) to it without blocking until the kernel takes no more
 * (the test reads nothing yet, its receive buffer is small: bytes stay
 * queued, unsent and unacknowledged, at any checkpoint). It then waits for
 * SIGTERM with the test's QUEUED bytes unread in its receive queue.
 *
 * At SIGTERM: writes the rest of the counter (TOTAL bytes in all), reads
 * the QUEUED bytes (seed 2) and AFTER bytes the test sent after the
 * checkpoint (seed 3), answers REPLY bytes (seed 4) and closes; any reset
 * or wrong byte fails.
 *
 * With argv[2] "fin" it shuts down writing once the kernel takes no more
 * (FIN_WAIT1, the FIN queued behind unsent data) and writes how many
 * bytes of the counter it sent to DIR/sent; at SIGTERM it only reads.
 *
 * With argv[2] "peer_fin" the test sends its AFTER bytes and shuts down
 * its side before the checkpoint (CLOSE_WAIT here): at SIGTERM, after the
 * AFTER bytes, reads must say end of file at once.
 *
 * With argv[2] "mptcp" it also connects a multipath TCP socket
 * (IPPROTO_MPTCP, which ferry refuses), without blocking, to the port the
 * test writes to DIR/connect (a listener whose queue is full: the
 * connection stays in SYN_SENT).
 */
#include "zdtm.h"
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#define TOTAL (4 << 20)
#define QUEUED 1000
#define AFTER 20000
#define REPLY 30000

/* Sends bytes [from, to) of the pattern; stops early at EAGAIN. */
static size_t send_from(int fd, size_t from, size_t to, unsigned seed)
{
	unsigned char buf[4096];

	while (from < to) {
		size_t n = to - from < sizeof buf ? to - from : sizeof buf;
		for (size_t i = 0; i < n; i++)
			buf[i] = zdtm_pattern(from + i, seed);
		ssize_t w = send(fd, buf, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN)
			break;
		if (w <= 0)
			zdtm_fail("send at byte %zu: %s", from, strerror(errno));
		from += (size_t)w;
	}
	return from;
}

/* Connects a multipath TCP socket without blocking to the port the test
 * writes to DIR/connect. */
static void connect_to_listed(const char *dir)
{
	struct sockaddr_in to = { .sin_family = AF_INET };
	char path[4096], text[16] = "";
	int s;

	snprintf(path, sizeof path, "%s/connect", dir);
	for (int i = 0; zdtm_read_file(path, text, sizeof text) <= 0 || !atoi(text); i++) {
		if (i == 1000)
			zdtm_fail("no port in %s", path);
		zdtm_sleep_ms(10);
	}
	to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	to.sin_port = htons((unsigned short)atoi(text));
	s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, IPPROTO_MPTCP);
	if (s < 0 || (connect(s, (struct sockaddr *)&to, sizeof to) && errno != EINPROGRESS))
		zdtm_fail("connecting to %s: %s", text, strerror(errno));
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof a;
	char path[4096], port[16];
	size_t sent;
	int lst, sock, fd, n, fin = argc > 2 && !strcmp(argv[2], "fin");
	int peer_fin = argc > 2 && !strcmp(argv[2], "peer_fin");

	if (argc < 2)
		zdtm_fail("usage: tcp_outside DIR");
	zdtm_init();
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lst = socket(AF_INET, SOCK_STREAM, 0);
	if (lst < 0 || bind(lst, (struct sockaddr *)&a, sizeof a) || listen(lst, 1) ||
	    getsockname(lst, (struct sockaddr *)&a, &len))
		zdtm_fail("listening: %s", strerror(errno));
	if (mkdir(argv[1], 0755) && errno != EEXIST)
		zdtm_fail("mkdir %s: %s", argv[1], strerror(errno));
	snprintf(path, sizeof path, "%s/port", argv[1]);
	n = snprintf(port, sizeof port, "%d\n", ntohs(a.sin_port));
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, port, (size_t)n) != n || close(fd))
		zdtm_fail("writing %s: %s", path, strerror(errno));
	zdtm_ready();
	sock = accept(lst, NULL, NULL);
	if (sock < 0 || fcntl(sock, F_SETFL, O_NONBLOCK))
		zdtm_fail("accept: %s", strerror(errno));
	close(lst);
	sent = 0;
	/* Fill what the kernel takes, until the test's bytes have come. */
	for (;;) {
		sent = send_from(sock, sent, TOTAL, 1);
		if (ioctl(sock, FIONREAD, &n) == 0 && n >= QUEUED)
			break;
		zdtm_sleep_ms(1);
	}
	if (fin) {
		if (shutdown(sock, SHUT_WR))
			zdtm_fail("shutdown: %s", strerror(errno));
		snprintf(path, sizeof path, "%s/sent", argv[1]);
		n = snprintf(port, sizeof port, "%zu\n", sent);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0 || write(fd, port, (size_t)n) != n || close(fd))
			zdtm_fail("writing %s: %s", path, strerror(errno));
	}
	if (argc > 2 && !strcmp(argv[2], "mptcp"))
		connect_to_listed(argv[1]);
	zdtm_wait_stop();

	if (fcntl(sock, F_SETFL, 0))
		zdtm_fail("F_SETFL: %s", strerror(errno));
	if (!fin && send_from(sock, sent, TOTAL, 1) != TOTAL)
		zdtm_fail("the rest of the counter was not sent");
	zdtm_recv_pattern(sock, QUEUED, 2, "queued");
	zdtm_recv_pattern(sock, AFTER, 3, "after");
	if (peer_fin)
		zdtm_expect_eof(sock, "after the peer's FIN");
	if (!fin && send_from(sock, 0, REPLY, 4) != REPLY)
		zdtm_fail("the reply was not sent");
	close(sock);
	zdtm_pass();
}
