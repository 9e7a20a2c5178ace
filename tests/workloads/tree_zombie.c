/*
 * Zombie children: one exits with code 42, another is killed by SIGKILL;
 * the parent does not reap them before SIGTERM, then must reap both with
 * those statuses.
 */
#include "zdtm.h"
#include <sys/wait.h>

int main(void)
{
	pid_t exited, killed;
	int status;

	zdtm_init();
	exited = fork();
	if (exited == 0)
		_exit(42);
	killed = fork();
	if (killed == 0) {
		kill(getpid(), SIGKILL);
		_exit(1);
	}
	if (exited < 0 || killed < 0)
		zdtm_fail("fork: %s", strerror(errno));
	while (zdtm_task_state(exited) != 'Z' || zdtm_task_state(killed) != 'Z')
		zdtm_sleep_ms(5);
	zdtm_ready();
	zdtm_wait_stop();
	if (zdtm_task_state(exited) != 'Z' || zdtm_task_state(killed) != 'Z')
		zdtm_fail("the children are in states %c and %c, not zombies",
			  zdtm_task_state(exited), zdtm_task_state(killed));
	if (waitpid(exited, &status, 0) != exited)
		zdtm_fail("waitpid(%d): %s", exited, strerror(errno));
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 42)
		zdtm_fail("the exited child's status is %#x", status);
	if (waitpid(killed, &status, 0) != killed)
		zdtm_fail("waitpid(%d): %s", killed, strerror(errno));
	if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
		zdtm_fail("the killed child's status is %#x", status);
	zdtm_pass();
}
