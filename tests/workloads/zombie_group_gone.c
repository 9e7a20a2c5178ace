/*
 * A zombie in a process group whose leader is gone (as CRIU's zombie01):
 * the root's child C leads its own group and clones G with CLONE_PARENT
 * (so G is the root's child, in C's group); G exits 6 and C exits; the
 * root reaps C only. Group C now lives on through the zombie G alone. At
 * SIGTERM G must still be a zombie of the root, in group C, exiting 6.
 */
#include "zdtm.h"
#include <sched.h>
#include <sys/syscall.h>
#include <sys/wait.h>

int main(void)
{
	siginfo_t info;
	int status;
	pid_t c, g, pgid;

	zdtm_init();
	c = fork();
	if (c < 0)
		zdtm_fail("fork: %s", strerror(errno));
	if (c == 0) {
		if (setpgid(0, 0))
			_exit(10);
		g = (pid_t)syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, 0, 0, 0);
		if (g < 0)
			_exit(11);
		if (g == 0)
			_exit(6);
		_exit(0);
	}
	if (waitpid(c, &status, 0) != c || !WIFEXITED(status) || WEXITSTATUS(status))
		zdtm_fail("C ended with status %#x", status);
	memset(&info, 0, sizeof info);
	if (waitid(P_ALL, 0, &info, WEXITED | WNOWAIT))
		zdtm_fail("waitid: %s", strerror(errno));
	g = info.si_pid;
	zdtm_ready();
	zdtm_wait_stop();
	memset(&info, 0, sizeof info);
	if (waitid(P_PID, g, &info, WEXITED | WNOWAIT))
		zdtm_fail("G %d is no zombie of ours: %s", g, strerror(errno));
	pgid = getpgid(g);
	if (pgid != c)
		zdtm_fail("G %d is in group %d, not C's %d", g, pgid, c);
	if (waitpid(g, &status, 0) != g || !WIFEXITED(status) || WEXITSTATUS(status) != 6)
		zdtm_fail("G ended with status %#x, not exit 6", status);
	zdtm_pass();
}
