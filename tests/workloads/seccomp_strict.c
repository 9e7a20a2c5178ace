/*
 * Refusal: a thread in strict seccomp mode (read, write, exit and
 * sigreturn only), blocked reading a pipe. Checkpoint must refuse it without
 * disturbing the process; at SIGTERM the strict thread still answers a byte
 * written to it through the pipe.
 */
#include "zdtm.h"
#include <linux/seccomp.h>
#include <pthread.h>
#include <sys/prctl.h>

static int to_worker[2], from_worker[2];

static void *strict(void *arg)
{
	char c;

	(void)arg;
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT, 0, 0, 0))
		zdtm_fail("PR_SET_SECCOMP: %s", strerror(errno));
	for (;;) {
		if (read(to_worker[0], &c, 1) == 1) {
			c++;
			if (write(from_worker[1], &c, 1) != 1)
				break;
		}
	}
	/* Only read and write are allowed here: end by being killed. */
	for (;;)
		;
}

int main(void)
{
	pthread_t th;
	char c = 'a';

	zdtm_init();
	if (pipe(to_worker) || pipe(from_worker))
		zdtm_fail("pipe: %s", strerror(errno));
	if (pthread_create(&th, NULL, strict, NULL))
		zdtm_fail("pthread_create");
	if (write(to_worker[1], &c, 1) != 1 || read(from_worker[0], &c, 1) != 1 || c != 'b')
		zdtm_fail("the strict thread does not answer");
	zdtm_ready();
	zdtm_wait_stop();

	if (write(to_worker[1], &c, 1) != 1 || read(from_worker[0], &c, 1) != 1 || c != 'c')
		zdtm_fail("the strict thread no longer answers");
	zdtm_pass();
}
