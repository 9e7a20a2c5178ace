/*
 * A tree in a PID namespace of its own, as `unshare --pid --fork` makes:
 * the launcher (outside) creates the namespace and forks its init (PID 1
 * there), which forks a child (PID 2) that keeps incrementing a counter in
 * shared memory. The launcher only waits for the init and prints nothing;
 * the tree to checkpoint is the init's. At SIGTERM the init checks that it
 * is still PID 1 and its child PID 2 in a namespace that is not its
 * parent's, that the counter still moves, then stops the child.
 */
#include "zdtm.h"
#include <sched.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>

static int init_main(void)
{
	volatile uint64_t *counter;
	uint64_t before;
	pid_t child;
	int status;

	counter = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (counter == MAP_FAILED)
		zdtm_fail("mmap: %s", strerror(errno));
	child = fork();
	if (child < 0)
		zdtm_fail("fork: %s", strerror(errno));
	if (child == 0) {
		signal(SIGTERM, SIG_DFL);
		for (;;) {
			(*counter)++;
			zdtm_sleep_ms(1);
		}
	}
	if (getpid() != 1 || child != 2)
		zdtm_fail("the init is PID %d and its child %d, not 1 and 2", getpid(), child);
	while (*counter == 0)
		zdtm_sleep_ms(5);
	zdtm_ready();
	zdtm_wait_stop();
	if (getpid() != 1)
		zdtm_fail("the init is PID %d after restore, not 1", getpid());
	if (getppid() != 0)
		zdtm_fail("the init sees a parent %d in its namespace", getppid());
	before = *counter;
	for (int i = 0; i < 200 && *counter == before; i++)
		zdtm_sleep_ms(10);
	if (*counter == before)
		zdtm_fail("the counter of child 2 stays at %llu", (unsigned long long)before);
	if (kill(2, SIGKILL))
		zdtm_fail("kill(2): %s", strerror(errno));
	if (waitpid(2, &status, 0) != 2)
		zdtm_fail("waitpid(2): %s", strerror(errno));
	zdtm_pass();
}

int main(void)
{
	pid_t init;
	int status;

	zdtm_init();
	if (unshare(CLONE_NEWPID))
		zdtm_fail("unshare(CLONE_NEWPID): %s", strerror(errno));
	init = fork();
	if (init < 0)
		zdtm_fail("fork: %s", strerror(errno));
	if (init == 0)
		return init_main();
	/* The init is checkpointed and killed; its restored copy is not ours. */
	while (waitpid(init, &status, 0) < 0 && errno == EINTR)
		;
	return 0;
}
