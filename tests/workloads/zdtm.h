/*
 * Shared protocol of the zdtm-style workloads (see tests/common/mod.rs):
 * set up a resource, print "READY", keep exercising it until SIGTERM, then
 * verify it and print "PASS" (exit 0) or "FAIL: <reason>" (exit 1).
 * Everything is written with write(2): no stdio buffers to lose or duplicate.
 */
#ifndef ZDTM_H
#define ZDTM_H

#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Set by the SIGTERM handler; main loops poll it. */
static volatile sig_atomic_t zdtm_stop;

static inline void zdtm_on_term(int sig)
{
	(void)sig;
	zdtm_stop = 1;
}

static inline void zdtm_write_all(const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(STDOUT_FILENO, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			_exit(2);
		buf += n;
		len -= (size_t)n;
	}
}

/* Prints "FAIL: <reason>" and exits 1. Usable before READY too. */
__attribute__((format(printf, 1, 2), noreturn))
static inline void zdtm_fail(const char *fmt, ...)
{
	char msg[512];
	int n = snprintf(msg, sizeof(msg), "FAIL: ");
	va_list ap;

	va_start(ap, fmt);
	n += vsnprintf(msg + n, sizeof(msg) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(msg) - 2)
		n = (int)sizeof(msg) - 2;
	msg[n++] = '\n';
	zdtm_write_all(msg, (size_t)n);
	_exit(1);
}

__attribute__((noreturn))
static inline void zdtm_pass(void)
{
	zdtm_write_all("PASS\n", 5);
	_exit(0);
}

/*
 * Call first: closes every fd but 0-2 inherited from whoever started us (e.g.
 * cargo's jobserver pipe, which the checkpoint would refuse), and installs
 * the SIGTERM handler (no SA_RESTART: sleeps wake up at once).
 */
static inline void zdtm_init(void)
{
	struct sigaction sa;

	if (close_range(3, ~0U, 0))
		zdtm_fail("close_range: %s", strerror(errno));
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = zdtm_on_term;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGTERM, &sa, NULL))
		zdtm_fail("sigaction(SIGTERM): %s", strerror(errno));
}

static inline void zdtm_ready(void)
{
	zdtm_write_all("READY\n", 6);
}

static inline void zdtm_sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Idles until SIGTERM. */
static inline void zdtm_wait_stop(void)
{
	while (!zdtm_stop)
		zdtm_sleep_ms(10);
}

static inline double zdtm_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Reads a small file (e.g. under /proc) into buf, NUL-terminated. */
static inline int zdtm_read_file(const char *path, char *buf, size_t size)
{
	FILE *f = fopen(path, "r");
	size_t n;

	if (!f)
		return -1;
	n = fread(buf, 1, size - 1, f);
	buf[n] = '\0';
	fclose(f);
	return (int)n;
}

/*
 * Field 22 of /proc/self/stat: when this process started. A restored
 * process started later than the one checkpointed, so a workload whose
 * state is meant to change at restore (moved to another cgroup) can tell.
 */
static inline unsigned long long zdtm_start_time(void)
{
	char buf[1024], *p;
	unsigned long long t = 0;

	if (zdtm_read_file("/proc/self/stat", buf, sizeof buf) < 0 || !(p = strrchr(buf, ')')))
		return 0;
	for (int field = 2; p && field < 22; field++)
		p = strchr(p + 1, ' ');
	if (p)
		sscanf(p + 1, "%llu", &t);
	return t;
}

/* The state letter of process pid in /proc/PID/stat ('T', 'Z' ...), or -1. */
static inline int zdtm_state_of(pid_t pid)
{
	char path[64], buf[512], *p;

	snprintf(path, sizeof path, "/proc/%d/stat", pid);
	if (zdtm_read_file(path, buf, sizeof buf) < 0)
		return -1;
	p = strrchr(buf, ')');
	return p && p[1] == ' ' ? p[2] : -1;
}

/* Byte i of the test pattern with seed `seed`: data sent over a connection
 * and checked on the other side (tests/tcp_established.rs computes the
 * same). */
static inline unsigned char zdtm_pattern(size_t i, unsigned seed)
{
	return (unsigned char)(i * 7 + seed + i / 251);
}

/* Receives exactly len bytes of the pattern with seed `seed` from fd,
 * failing the test on a short read or a wrong byte. */
static inline void zdtm_recv_pattern(int fd, size_t len, unsigned seed, const char *what)
{
	unsigned char buf[4096];

	for (size_t done = 0; done < len;) {
		size_t n = len - done < sizeof buf ? len - done : sizeof buf;
		ssize_t r = recv(fd, buf, n, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			zdtm_fail("%s: recv after %zu of %zu bytes returned %zd (%s)", what, done,
				  len, r, r ? strerror(errno) : "end of file");
		for (ssize_t i = 0; i < r; i++)
			if (buf[i] != zdtm_pattern(done + (size_t)i, seed))
				zdtm_fail("%s: byte %zu is wrong", what, done + (size_t)i);
		done += (size_t)r;
	}
}

/* Fails the test unless a non-blocking read of fd says end of file. */
static inline void zdtm_expect_eof(int fd, const char *what)
{
	char c;
	ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);

	if (n != 0)
		zdtm_fail("%s: read returned %zd (%s), not end of file", what, n,
			  n < 0 ? strerror(errno) : "data");
}

#endif
