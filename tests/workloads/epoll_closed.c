/*
 * epoll registrations that outlive the fd they were made with (as CRIU's
 * epoll01): five pipes, each read end dup'ed to fd 702 or 701 and
 * registered there (data = its index); the dups of pipes 0, 1 and 3 are
 * closed again, so fd 702 ends up on pipe 2 and fd 701 on pipe 4, while
 * the registrations of pipes 0, 1 (at 702) and 3 (at 701) live on through
 * the pipes' original read ends. A sixth registration, of pipe 5 at fd 700,
 * whose only fd now is its original one: nothing is open at 700; and a
 * seventh, of pipe 6 at fd 703, just above every open fd (where a restore
 * parks its files), closed too.
 * At SIGTERM: a byte written to each pipe in turn wakes exactly its own
 * registration; EPOLL_CTL_DEL of fd 702 removes pipe 2's registration
 * only, and EPOLL_CTL_ADD at 702 works again.
 */
#include "zdtm.h"
#include <fcntl.h>
#include <sys/epoll.h>

#define PIPES 7

static const int dup_at[PIPES] = { 702, 702, 702, 701, 701, 700, 703 };
static const int closed[PIPES] = { 1, 1, 0, 1, 0, 1, 1 };

/* A byte into pipe i must wake registration `want` (-1: none at all). */
static void wakes(int ep, int p[][2], int i, int want)
{
	struct epoll_event ev;
	char c = 'x';
	int n;

	if (write(p[i][1], &c, 1) != 1)
		zdtm_fail("write to pipe %d: %s", i, strerror(errno));
	n = epoll_wait(ep, &ev, 1, want < 0 ? 50 : 1000);
	if (want < 0 && n != 0)
		zdtm_fail("pipe %d still wakes registration %llu", i, (unsigned long long)ev.data.u64);
	if (want >= 0 && (n != 1 || ev.data.u64 != (unsigned long long)want))
		zdtm_fail("pipe %d: epoll_wait gave %d events (data %llu), wanted %d", i, n,
			  n == 1 ? (unsigned long long)ev.data.u64 : 0ULL, want);
	if (read(p[i][0], &c, 1) != 1)
		zdtm_fail("read of pipe %d: %s", i, strerror(errno));
}

int main(void)
{
	struct epoll_event ev = { .events = EPOLLIN };
	int p[PIPES][2], ep, i;

	zdtm_init();
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		zdtm_fail("epoll_create1: %s", strerror(errno));
	for (i = 0; i < PIPES; i++) {
		if (pipe(p[i]) || dup2(p[i][0], dup_at[i]) != dup_at[i])
			zdtm_fail("pipe %d: %s", i, strerror(errno));
		ev.data.u64 = (unsigned long long)i;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, dup_at[i], &ev))
			zdtm_fail("EPOLL_CTL_ADD of pipe %d: %s", i, strerror(errno));
		if (closed[i] && close(dup_at[i]))
			zdtm_fail("close: %s", strerror(errno));
	}
	zdtm_ready();
	zdtm_wait_stop();

	if (fcntl(700, F_GETFD) != -1 || errno != EBADF)
		zdtm_fail("fd 700 is open");
	for (i = 0; i < PIPES; i++)
		wakes(ep, p, i, i);
	if (epoll_ctl(ep, EPOLL_CTL_DEL, 702, NULL))
		zdtm_fail("EPOLL_CTL_DEL of fd 702: %s", strerror(errno));
	wakes(ep, p, 2, -1);
	wakes(ep, p, 0, 0);
	wakes(ep, p, 1, 1);
	ev.data.u64 = 22;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, 702, &ev))
		zdtm_fail("EPOLL_CTL_ADD of fd 702 again: %s", strerror(errno));
	wakes(ep, p, 2, 22);
	zdtm_pass();
}
