/*
 * Sessions and process groups: the root's child L is a session leader
 * with two children, C1 leading a process group and C2 a member of it.
 * At SIGTERM the root checks every session and group ID, then asks L to
 * end: L kills and reaps its children (it must still be their parent) and
 * exits 0.
 */
#include "zdtm.h"
#include <sys/wait.h>

static volatile sig_atomic_t leave;

static void on_usr1(int sig)
{
	(void)sig;
	leave = 1;
}

static void idle(void)
{
	for (;;)
		pause();
}

static void leader(int report)
{
	pid_t c[2];
	int status;

	signal(SIGTERM, SIG_DFL);
	signal(SIGUSR1, on_usr1);
	if (setsid() < 0)
		_exit(10);
	c[0] = fork();
	if (c[0] == 0) {
		setpgid(0, 0);
		idle();
	}
	setpgid(c[0], c[0]);
	c[1] = fork();
	if (c[1] == 0) {
		setpgid(0, c[0]);
		idle();
	}
	setpgid(c[1], c[0]);
	if (c[0] < 0 || c[1] < 0 || write(report, c, sizeof c) != sizeof c)
		_exit(11);
	while (!leave)
		zdtm_sleep_ms(10);
	for (int i = 0; i < 2; i++) {
		kill(c[i], SIGKILL);
		if (waitpid(c[i], &status, 0) != c[i] || !WIFSIGNALED(status))
			_exit(12 + i);
	}
	_exit(0);
}

int main(void)
{
	int report[2], status;
	pid_t l, c[2];

	zdtm_init();
	if (pipe(report))
		zdtm_fail("pipe: %s", strerror(errno));
	l = fork();
	if (l < 0)
		zdtm_fail("fork: %s", strerror(errno));
	if (l == 0)
		leader(report[1]);
	if (read(report[0], c, sizeof c) != sizeof c)
		zdtm_fail("the session leader did not report its children");
	/* Both children are in their group before READY. */
	while (getpgid(c[1]) != c[0])
		zdtm_sleep_ms(5);
	zdtm_ready();
	zdtm_wait_stop();
	if (getsid(l) != l || getpgid(l) != l)
		zdtm_fail("L %d: session %d group %d", l, getsid(l), getpgid(l));
	for (int i = 0; i < 2; i++)
		if (getsid(c[i]) != l || getpgid(c[i]) != c[0])
			zdtm_fail("C%d %d: session %d group %d, want %d and %d", i + 1, c[i],
				  getsid(c[i]), getpgid(c[i]), l, c[0]);
	if (getsid(0) == l)
		zdtm_fail("the root is in L's session");
	kill(l, SIGUSR1);
	if (waitpid(l, &status, 0) != l)
		zdtm_fail("waitpid: %s", strerror(errno));
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		zdtm_fail("L ended with status %#x", status);
	zdtm_pass();
}
