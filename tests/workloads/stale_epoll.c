/*
 * Refusal: an epoll instance at fd 10 whose registration of a pipe's read
 * end outlives the fd it was made with: the read end was dup'ed and the
 * registered fd closed, so epoll_ctl could not recreate the registration.
 * Checkpoint must refuse it without disturbing it; at SIGTERM the epoll
 * instance must still report the pipe.
 */
#include "zdtm.h"
#include <sys/epoll.h>

#define FD 10
#define DATA 0x5eed

int main(int argc, char **argv)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = DATA };
	int p[2], ep, kept;

	(void)argv;
	zdtm_init();
	if (argc < 2)
		zdtm_fail("usage: stale_epoll DIR");
	ep = epoll_create1(0);
	if (pipe(p) || ep < 0 || dup2(ep, FD) != FD || close(ep))
		zdtm_fail("setup: %s", strerror(errno));
	if (epoll_ctl(FD, EPOLL_CTL_ADD, p[0], &ev))
		zdtm_fail("EPOLL_CTL_ADD: %s", strerror(errno));
	kept = dup(p[0]);
	if (kept < 0 || close(p[0]))
		zdtm_fail("dup: %s", strerror(errno));
	zdtm_ready();
	zdtm_wait_stop();

	if (write(p[1], "x", 1) != 1 || epoll_wait(FD, &ev, 1, 1000) != 1 || ev.data.u64 != DATA)
		zdtm_fail("the epoll instance no longer reports the pipe");
	zdtm_pass();
}
