/*
 * A thread in strict seccomp mode (read, write, exit and sigreturn only),
 * blocked reading a pipe, beside a main thread without seccomp. At SIGTERM
 * the strict thread still answers a byte written to it through the pipe,
 * and /proc shows it still in strict mode (Seccomp: 1) and the main thread
 * still free (Seccomp: 0).
 */
#include "zdtm.h"
#include <linux/seccomp.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

static int to_worker[2], from_worker[2];
static volatile pid_t worker_tid;

static void *strict(void *arg)
{
	char c;

	(void)arg;
	worker_tid = (pid_t)syscall(SYS_gettid);
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

/* The seccomp mode /proc shows for thread `tid` of this process. */
static int seccomp_mode(pid_t tid)
{
	char path[64], line[128];
	int mode = -1;
	FILE *f;

	snprintf(path, sizeof path, "/proc/self/task/%d/status", (int)tid);
	f = fopen(path, "r");
	if (!f)
		zdtm_fail("%s: %s", path, strerror(errno));
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "Seccomp: %d", &mode) == 1)
			break;
	fclose(f);
	return mode;
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
	if (seccomp_mode(worker_tid) != 1)
		zdtm_fail("the worker's seccomp mode is %d, want 1 (strict)", seccomp_mode(worker_tid));
	if (seccomp_mode((pid_t)syscall(SYS_gettid)) != 0)
		zdtm_fail("the main thread's seccomp mode is %d, want 0", seccomp_mode((pid_t)syscall(SYS_gettid)));
	zdtm_pass();
}
