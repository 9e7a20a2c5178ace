/*
 * A long two-way TCP stream with a client outside the tree (issue 14's
 * stream test, tests/container.rs: the client is on host C, the workload in
 * a container on the link):
 *   tcp_stream ADDR PORT [MIB]
 * listens on ADDR:PORT, prints READY and accepts one connection. Then,
 * every millisecond (the rate restarting from now after a freeze), it sends its counter (a little-endian u64: 0, 1, 2 ...)
 * and reads what the client sent back: the client's own counter, which
 * must also go 0, 1, 2 ... with no gap or duplicate. With MIB, it also
 * rewrites MIB MiB of memory at MIB MiB/s (a migration's final round then
 * has that much to send while the tree is frozen).
 *
 * The client's end of file ends the stream: the workload shuts down its
 * side too and idles; a reset or an error before it fails the test. At SIGTERM: PASS if the
 * client's counters all came in order (at least 100 of them), else FAIL.
 */
#include "zdtm.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <sys/mman.h>

#define TICK_NS 1000000L
#define PAGE 4096

/* The client's counter, read 8 bytes at a time (a read may split one). */
static uint64_t received;
static unsigned char partial[8];
static size_t partial_len;
/* Whether the client ended the stream (end of file). */
static int client_done;

static void send_counter(int fd, uint64_t n)
{
	unsigned char buf[8];

	for (int i = 0; i < 8; i++)
		buf[i] = (unsigned char)(n >> (8 * i));
	for (size_t done = 0; done < sizeof buf;) {
		ssize_t w = send(fd, buf + done, sizeof buf - done, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EPIPE || errno == ECONNRESET) && client_done)
			return;
		if (w <= 0)
			zdtm_fail("send of counter %llu: %s", (unsigned long long)n,
				  strerror(errno));
		done += (size_t)w;
	}
}

/* Reads (without waiting) what the client sent and checks its counters. */
static void drain(int fd)
{
	unsigned char buf[4096];

	for (;;) {
		ssize_t r = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (r < 0)
			zdtm_fail("recv after %llu counters: %s", (unsigned long long)received,
				  strerror(errno));
		if (r == 0) {
			client_done = 1;
			return;
		}
		for (ssize_t i = 0; i < r; i++) {
			partial[partial_len++] = buf[i];
			if (partial_len < sizeof partial)
				continue;
			uint64_t n = 0;
			for (int b = 0; b < 8; b++)
				n |= (uint64_t)partial[b] << (8 * b);
			if (n != received)
				zdtm_fail("the client's counter %llu came where %llu was due",
					  (unsigned long long)n, (unsigned long long)received);
			received++;
			partial_len = 0;
		}
	}
}

int main(int argc, char **argv)
{
	struct sockaddr_in addr = { .sin_family = AF_INET };
	size_t pages = 0, next_page = 0, per_tick = 0;
	unsigned char *mem = NULL;
	uint64_t sent = 0;
	struct timespec next, now;
	int one = 1, l, c;

	zdtm_init();
	if (argc < 3)
		zdtm_fail("usage: tcp_stream ADDR PORT [MIB]");
	if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1)
		zdtm_fail("not an IPv4 address: %s", argv[1]);
	addr.sin_port = htons((uint16_t)atoi(argv[2]));
	if (argc > 3 && atol(argv[3]) > 0) {
		pages = (size_t)atol(argv[3]) * (1 << 20) / PAGE;
		/* MIB MiB/s: a thousandth of the pages every tick. */
		per_tick = pages / 1000 + 1;
		mem = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			   -1, 0);
		if (mem == MAP_FAILED)
			zdtm_fail("mmap of %zu pages: %s", pages, strerror(errno));
		memset(mem, 1, pages * PAGE);
	}
	l = socket(AF_INET, SOCK_STREAM, 0);
	if (l < 0 || setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
	    bind(l, (struct sockaddr *)&addr, sizeof addr) || listen(l, 1))
		zdtm_fail("listening on %s:%s: %s", argv[1], argv[2], strerror(errno));
	zdtm_ready();
	do
		c = accept(l, NULL, NULL);
	while (c < 0 && errno == EINTR && !zdtm_stop);
	if (c < 0)
		zdtm_fail("accept: %s", zdtm_stop ? "SIGTERM before a client came" : strerror(errno));
	if (setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one))
		zdtm_fail("TCP_NODELAY: %s", strerror(errno));
	clock_gettime(CLOCK_MONOTONIC, &next);
	while (!zdtm_stop && !client_done) {
		send_counter(c, sent++);
		drain(c);
		for (size_t i = 0; i < per_tick; i++) {
			mem[next_page * PAGE] = (unsigned char)sent;
			next_page = (next_page + 1) % pages;
		}
		next.tv_nsec += TICK_NS;
		if (next.tv_nsec >= 1000000000L) {
			next.tv_nsec -= 1000000000L;
			next.tv_sec++;
		}
		/* Behind (frozen for a while): the rate restarts from now,
		 * with no burst to catch up. */
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec > next.tv_sec || (now.tv_sec == next.tv_sec && now.tv_nsec > next.tv_nsec))
			next = now;
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
	}
	/* The client ended writing: the stream ends both ways, so that the
	 * client reads what was sent to its end and closes with nothing
	 * unread (a close with unread bytes would be a reset). */
	if (client_done && shutdown(c, SHUT_WR))
		zdtm_fail("shutdown: %s", strerror(errno));
	zdtm_wait_stop();
	if (received < 100)
		zdtm_fail("only %llu counters came from the client", (unsigned long long)received);
	zdtm_pass();
}
