/*
 * Refusal: an epoll instance at fd 10 whose registration of a pipe's read
 * end outlives every fd of this process on it: the read end was closed
 * here after a child inherited it, so only the child keeps the file (and
 * the registration) alive, and no fd of this process could stand in for
 * it at restore. Checkpoint must refuse it without disturbing it; at
 * SIGTERM the epoll instance must still report the pipe.
 */
#include "zdtm.h"
#include <sys/epoll.h>
#include <sys/prctl.h>

#define FD 10
#define DATA 0x5eed

int main(int argc, char **argv)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = DATA };
	int p[2], ep;
	pid_t child;

	(void)argv;
	zdtm_init();
	if (argc < 2)
		zdtm_fail("usage: stale_epoll DIR");
	ep = epoll_create1(0);
	if (pipe(p) || ep < 0 || dup2(ep, FD) != FD || close(ep))
		zdtm_fail("setup: %s", strerror(errno));
	if (epoll_ctl(FD, EPOLL_CTL_ADD, p[0], &ev))
		zdtm_fail("EPOLL_CTL_ADD: %s", strerror(errno));
	child = fork();
	if (child < 0)
		zdtm_fail("fork: %s", strerror(errno));
	if (child == 0) {
		/* Keeps only the read end, until the parent is gone. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(FD);
		close(p[1]);
		for (;;)
			pause();
	}
	if (close(p[0]))
		zdtm_fail("close: %s", strerror(errno));
	zdtm_ready();
	zdtm_wait_stop();

	if (write(p[1], "x", 1) != 1 || epoll_wait(FD, &ev, 1, 1000) != 1 || ev.data.u64 != DATA)
		zdtm_fail("the epoll instance no longer reports the pipe");
	zdtm_pass();
}
