/*
 * Unix sockets: a stream socketpair with bytes queued both ways (one end
 * O_NONBLOCK); a datagram socketpair with 3 queued datagrams of different
 * sizes and a seqpacket socketpair with 2 queued messages, whose boundaries
 * must survive; a stream socket listening on DIR/listen.sock and a datagram
 * socket bound to an abstract name. At SIGTERM: every queued byte and
 * message comes out intact, in order and nothing more; the pairs still
 * carry data; the listening socket accepts a new connection; the abstract
 * socket still has its name and receives a datagram.
 */
#include "zdtm.h"
#include <fcntl.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

#define AHEAD 5000
#define BACK 100

static const size_t dgram_sizes[] = { 10, 1000, 3 };
static const size_t seq_sizes[] = { 700, 1 };

static void fill(char *buf, size_t len, char seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (char)(seed + i % 23);
}

/* Receives exactly one message of `len` bytes filled from `seed`. */
static void expect(int fd, size_t len, char seed, const char *what)
{
	char buf[8192], want[8192];
	ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);

	if (n != (ssize_t)len)
		zdtm_fail("%s: got %zd bytes instead of %zu (%s)", what, n, len,
			  n < 0 ? strerror(errno) : "");
	fill(want, len, seed);
	if (memcmp(buf, want, len))
		zdtm_fail("%s: the bytes differ", what);
}

static void expect_empty(int fd, const char *what)
{
	char c;

	if (recv(fd, &c, 1, MSG_DONTWAIT) != -1 || errno != EAGAIN)
		zdtm_fail("%s: more data than was queued", what);
}

static void pair_works(int a, int b, const char *what)
{
	char c = 0;

	if (send(a, "q", 1, 0) != 1 || recv(b, &c, 1, 0) != 1 || c != 'q')
		zdtm_fail("%s no longer carries data", what);
}

int main(int argc, char **argv)
{
	int st[2], dg[2], sq[2], lst, abs_sock, cl, acc;
	char buf[AHEAD], abs_name[64];
	struct sockaddr_un addr = { .sun_family = AF_UNIX }, got;
	socklen_t addr_len, got_len = sizeof got;

	zdtm_init();
	if (argc < 2)
		zdtm_fail("usage: unix_sockets DIR");
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, st) || socketpair(AF_UNIX, SOCK_DGRAM, 0, dg) ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sq))
		zdtm_fail("socketpair: %s", strerror(errno));
	fill(buf, AHEAD, 'a');
	if (write(st[0], buf, AHEAD) != AHEAD)
		zdtm_fail("queueing on the stream pair: %s", strerror(errno));
	fill(buf, BACK, 'A');
	if (write(st[1], buf, BACK) != BACK || fcntl(st[1], F_SETFL, O_NONBLOCK))
		zdtm_fail("queueing back on the stream pair: %s", strerror(errno));
	for (int i = 0; i < 3; i++) {
		fill(buf, dgram_sizes[i], (char)('0' + i));
		if (send(dg[0], buf, dgram_sizes[i], 0) != (ssize_t)dgram_sizes[i])
			zdtm_fail("datagram %d: %s", i, strerror(errno));
	}
	for (int i = 0; i < 2; i++) {
		fill(buf, seq_sizes[i], (char)('k' + i));
		if (send(sq[1], buf, seq_sizes[i], 0) != (ssize_t)seq_sizes[i])
			zdtm_fail("seqpacket %d: %s", i, strerror(errno));
	}

	snprintf(addr.sun_path, sizeof addr.sun_path, "%s/listen.sock", argv[1]);
	lst = socket(AF_UNIX, SOCK_STREAM, 0);
	if (lst < 0 || bind(lst, (struct sockaddr *)&addr, sizeof addr) || listen(lst, 5))
		zdtm_fail("listening on %s: %s", addr.sun_path, strerror(errno));

	memset(&addr.sun_path, 0, sizeof addr.sun_path);
	snprintf(abs_name, sizeof abs_name, "ferry-zdtm-%d", (int)getpid());
	memcpy(addr.sun_path + 1, abs_name, strlen(abs_name));
	addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(abs_name));
	abs_sock = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (abs_sock < 0 || bind(abs_sock, (struct sockaddr *)&addr, addr_len))
		zdtm_fail("binding @%s: %s", abs_name, strerror(errno));
	zdtm_ready();
	zdtm_wait_stop();

	/* The stream pair: 5000 bytes one way (read in pieces), 100 back. */
	size_t have = 0;
	char want[AHEAD];
	while (have < AHEAD) {
		ssize_t n = recv(st[1], buf + have, AHEAD - have, MSG_DONTWAIT);
		if (n <= 0)
			zdtm_fail("stream: %zu of %d bytes came out", have, AHEAD);
		have += (size_t)n;
	}
	fill(want, AHEAD, 'a');
	if (memcmp(buf, want, AHEAD))
		zdtm_fail("stream: the bytes differ");
	expect_empty(st[1], "stream");
	expect(st[0], BACK, 'A', "stream back");
	expect_empty(st[0], "stream back");
	if (!(fcntl(st[1], F_GETFL) & O_NONBLOCK) || (fcntl(st[0], F_GETFL) & O_NONBLOCK))
		zdtm_fail("stream: O_NONBLOCK moved");
	pair_works(st[0], st[1], "the stream pair");

	for (int i = 0; i < 3; i++)
		expect(dg[1], dgram_sizes[i], (char)('0' + i), "datagram");
	expect_empty(dg[1], "datagrams");
	pair_works(dg[1], dg[0], "the datagram pair");
	for (int i = 0; i < 2; i++)
		expect(sq[0], seq_sizes[i], (char)('k' + i), "seqpacket");
	expect_empty(sq[0], "seqpackets");
	pair_works(sq[0], sq[1], "the seqpacket pair");

	/* The listening socket accepts a new connection. */
	snprintf(addr.sun_path, sizeof addr.sun_path, "%s/listen.sock", argv[1]);
	cl = socket(AF_UNIX, SOCK_STREAM, 0);
	if (cl < 0 || connect(cl, (struct sockaddr *)&addr, sizeof addr))
		zdtm_fail("connecting to %s: %s", addr.sun_path, strerror(errno));
	acc = accept(lst, NULL, NULL);
	if (acc < 0)
		zdtm_fail("accept: %s", strerror(errno));
	pair_works(cl, acc, "the accepted connection");

	/* The abstract socket keeps its name and receives. */
	if (getsockname(abs_sock, (struct sockaddr *)&got, &got_len) || got_len != addr_len ||
	    got.sun_path[0] || memcmp(got.sun_path + 1, abs_name, strlen(abs_name)))
		zdtm_fail("the abstract socket lost its name @%s", abs_name);
	memset(&addr.sun_path, 0, sizeof addr.sun_path);
	memcpy(addr.sun_path + 1, abs_name, strlen(abs_name));
	int tx = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (tx < 0 || sendto(tx, "d", 1, 0, (struct sockaddr *)&addr, addr_len) != 1 ||
	    recv(abs_sock, buf, 1, 0) != 1 || buf[0] != 'd')
		zdtm_fail("the abstract socket does not receive: %s", strerror(errno));
	zdtm_pass();
}
