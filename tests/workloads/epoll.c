/*
 * epoll: an epoll set over the read ends of two pipes, one level-triggered
 * (EPOLLIN, with a byte buffered at checkpoint) and one edge-triggered
 * (EPOLLIN|EPOLLET), each with its own 64-bit data; and a second epoll set
 * that holds the first (nested). At SIGTERM: the registrations are as they
 * were (fd, events and data in fdinfo), epoll_wait reports the buffered
 * pipe with its data, a write to the other pipe wakes it with its data,
 * the outer set reports the inner one, and EPOLL_CTL_MOD and EPOLL_CTL_DEL
 * work with the original fd numbers.
 */
#include "zdtm.h"
#include <sys/epoll.h>

#define DATA_LEVEL 0x1111000000000001ULL
#define DATA_EDGE 0x2222000000000002ULL
#define DATA_INNER 0x3333000000000003ULL
#define DATA_MOD 0x4444000000000004ULL

/* The "tfd events data" part of every registration line of fd's fdinfo, as ";r1;r2;". */
static void registrations(int fd, char *out, size_t size)
{
	char path[64], text[4096], *line;
	size_t used;

	snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
	if (zdtm_read_file(path, text, sizeof text) < 0)
		zdtm_fail("reading %s: %s", path, strerror(errno));
	used = (size_t)snprintf(out, size, ";");
	for (line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		int tfd;
		unsigned events;
		unsigned long long data;

		if (sscanf(line, "tfd: %d events: %x data: %llx", &tfd, &events, &data) == 3)
			used += (size_t)snprintf(out + used, size - used, "%d %x %llx;", tfd, events, data);
	}
}

/* Waits up to ms for events on ep; whether one of them carries the data want. */
static int reported(int ep, unsigned long long want, int ms)
{
	struct epoll_event ev[8];
	int n = epoll_wait(ep, ev, 8, ms);

	if (n < 0)
		zdtm_fail("epoll_wait: %s", strerror(errno));
	for (int i = 0; i < n; i++)
		if (ev[i].data.u64 == want)
			return 1;
	return 0;
}

int main(int argc, char **argv)
{
	int level[2], edge[2], ep, outer;
	struct epoll_event ev;
	char before[1024], after[1024], c;

	(void)argv;
	zdtm_init();
	if (argc < 2)
		zdtm_fail("usage: epoll DIR");
	if (pipe(level) || pipe(edge))
		zdtm_fail("pipe: %s", strerror(errno));
	ep = epoll_create1(EPOLL_CLOEXEC);
	outer = epoll_create1(0);
	if (ep < 0 || outer < 0)
		zdtm_fail("epoll_create1: %s", strerror(errno));
	ev.events = EPOLLIN;
	ev.data.u64 = DATA_LEVEL;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, level[0], &ev))
		zdtm_fail("EPOLL_CTL_ADD level: %s", strerror(errno));
	ev.events = EPOLLIN | EPOLLET;
	ev.data.u64 = DATA_EDGE;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, edge[0], &ev))
		zdtm_fail("EPOLL_CTL_ADD edge: %s", strerror(errno));
	ev.events = EPOLLIN;
	ev.data.u64 = DATA_INNER;
	if (epoll_ctl(outer, EPOLL_CTL_ADD, ep, &ev))
		zdtm_fail("EPOLL_CTL_ADD nested: %s", strerror(errno));
	if (write(level[1], "x", 1) != 1)
		zdtm_fail("write: %s", strerror(errno));
	if (!reported(ep, DATA_LEVEL, 1000) || !reported(outer, DATA_INNER, 1000))
		zdtm_fail("the buffered pipe is not reported before checkpoint");
	registrations(ep, before, sizeof before);
	zdtm_ready();
	zdtm_wait_stop();

	/* fdinfo lists registrations in the order of file addresses. */
	registrations(ep, after, sizeof after);
	if (strlen(before) != strlen(after))
		zdtm_fail("registrations changed: before %s after %s", before, after);
	for (char *r = strtok(before + 1, ";"); r; r = strtok(NULL, ";")) {
		char want[128];

		snprintf(want, sizeof want, ";%s;", r);
		if (!strstr(after, want))
			zdtm_fail("registration %s is gone: now %s", r, after);
	}
	if (!reported(ep, DATA_LEVEL, 1000))
		zdtm_fail("the buffered pipe is not reported after restore");
	if (!reported(outer, DATA_INNER, 1000))
		zdtm_fail("the outer epoll does not report the inner one");
	if (write(edge[1], "y", 1) != 1)
		zdtm_fail("write: %s", strerror(errno));
	if (!reported(ep, DATA_EDGE, 1000))
		zdtm_fail("a write to the edge-triggered pipe is not reported");
	if (reported(ep, DATA_EDGE, 0))
		zdtm_fail("the edge-triggered pipe is reported twice for one write");
	ev.events = EPOLLIN;
	ev.data.u64 = DATA_MOD;
	if (epoll_ctl(ep, EPOLL_CTL_MOD, level[0], &ev))
		zdtm_fail("EPOLL_CTL_MOD with the original fd: %s", strerror(errno));
	if (!reported(ep, DATA_MOD, 1000))
		zdtm_fail("the modified registration does not report its new data");
	if (epoll_ctl(ep, EPOLL_CTL_DEL, level[0], NULL) || epoll_ctl(ep, EPOLL_CTL_DEL, edge[0], NULL))
		zdtm_fail("EPOLL_CTL_DEL with the original fds: %s", strerror(errno));
	if (reported(ep, DATA_MOD, 0) || reported(ep, DATA_LEVEL, 0))
		zdtm_fail("a deleted registration is still reported");
	if (read(level[0], &c, 1) != 1 || c != 'x' || read(edge[0], &c, 1) != 1 || c != 'y')
		zdtm_fail("the pipes lost their bytes");
	zdtm_pass();
}
