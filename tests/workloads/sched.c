/*
 * Scheduling, per thread: the main thread runs SCHED_BATCH at nice 5, a
 * second thread SCHED_RR priority 3 with SCHED_RESET_ON_FORK and nice -7
 * (kept by the kernel under a real-time policy), a third SCHED_IDLE at
 * nice 12; a child runs SCHED_OTHER at nice -20 and a second child
 * SCHED_FIFO priority 10. At SIGTERM the root checks every thread's
 * policy, priority and nice value, and asks the children to check theirs.
 */
#include "zdtm.h"
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>

struct want {
	const char *who;
	int policy; /* with SCHED_RESET_ON_FORK or'ed in */
	int priority;
	int nice;
};

static volatile pid_t worker_tid[2];

/* Sets the calling thread's nice value, then its policy. */
static void set_own(const struct want *w)
{
	struct sched_param p = { .sched_priority = w->priority };

	if (setpriority(PRIO_PROCESS, 0, w->nice))
		zdtm_fail("%s: setpriority(%d): %s", w->who, w->nice, strerror(errno));
	if (sched_setscheduler(0, w->policy, &p))
		zdtm_fail("%s: sched_setscheduler(%#x, %d): %s", w->who, w->policy, w->priority,
			  strerror(errno));
}

/* Checks thread `tid`; returns a reason or NULL. */
static const char *check(pid_t tid, const struct want *w)
{
	static char why[256];
	struct sched_param p;
	int policy, nice;

	policy = sched_getscheduler(tid);
	if (policy != w->policy) {
		snprintf(why, sizeof why, "%s: policy %#x, want %#x", w->who, policy, w->policy);
		return why;
	}
	if (sched_getparam(tid, &p) || p.sched_priority != w->priority) {
		snprintf(why, sizeof why, "%s: priority %d, want %d", w->who, p.sched_priority,
			 w->priority);
		return why;
	}
	errno = 0;
	nice = getpriority(PRIO_PROCESS, tid);
	if (errno || nice != w->nice) {
		snprintf(why, sizeof why, "%s: nice %d, want %d", w->who, nice, w->nice);
		return why;
	}
	return NULL;
}

static const struct want wants[] = {
	{ "main thread", SCHED_BATCH, 0, 5 },
	{ "RR thread", SCHED_RR | SCHED_RESET_ON_FORK, 3, -7 },
	{ "idle thread", SCHED_IDLE, 0, 12 },
	{ "child", SCHED_OTHER, 0, -20 },
	{ "FIFO child", SCHED_FIFO, 10, 0 },
};

static void *worker(void *arg)
{
	long i = (long)arg;

	set_own(&wants[i]);
	worker_tid[i - 1] = (pid_t)syscall(SYS_gettid);
	for (;;)
		pause();
	return NULL;
}

/* A child: sets itself up, reports, checks itself on SIGTERM. */
static pid_t child(int i, int report)
{
	pid_t pid = fork();
	const char *why;

	if (pid < 0)
		zdtm_fail("fork: %s", strerror(errno));
	if (pid > 0)
		return pid;
	set_own(&wants[i]);
	if (write(report, "", 1) != 1)
		_exit(10);
	zdtm_wait_stop();
	why = check(0, &wants[i]);
	if (why)
		zdtm_fail("%s", why);
	_exit(0);
}

int main(void)
{
	pthread_t th;
	pid_t kids[2];
	int report[2], status;
	const char *why;
	char c;

	zdtm_init();
	if (pipe(report))
		zdtm_fail("pipe: %s", strerror(errno));
	for (long i = 1; i <= 2; i++)
		if (pthread_create(&th, NULL, worker, (void *)i))
			zdtm_fail("pthread_create");
	while (!worker_tid[0] || !worker_tid[1])
		zdtm_sleep_ms(1);
	kids[0] = child(3, report[1]);
	kids[1] = child(4, report[1]);
	for (int i = 0; i < 2; i++)
		if (read(report[0], &c, 1) != 1)
			zdtm_fail("a child did not get ready");
	/* Last: the children and threads were made under the default policy. */
	set_own(&wants[0]);
	zdtm_ready();
	zdtm_wait_stop();
	if ((why = check(0, &wants[0])) || (why = check(worker_tid[0], &wants[1])) ||
	    (why = check(worker_tid[1], &wants[2])))
		zdtm_fail("%s", why);
	for (int i = 0; i < 2; i++) {
		kill(kids[i], SIGTERM);
		if (waitpid(kids[i], &status, 0) != kids[i])
			zdtm_fail("waitpid: %s", strerror(errno));
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			zdtm_fail("%s ended with status %#x", wants[3 + i].who, status);
	}
	zdtm_pass();
}
