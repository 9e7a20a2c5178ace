/*
 * Task names: the process renames itself with prctl(PR_SET_NAME) and names
 * its one extra thread with pthread_setname_np(). At SIGTERM both names must
 * be back, seen through PR_GET_NAME, /proc/self/comm and
 * /proc/self/task/<tid>/comm.
 */
#include "zdtm.h"
#include <dirent.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

static volatile int quit;
static volatile pid_t worker_tid;

static void *worker(void *arg)
{
	(void)arg;
	worker_tid = (pid_t)syscall(SYS_gettid);
	while (!quit)
		zdtm_sleep_ms(5);
	return NULL;
}

int main(void)
{
	char name[32], path[64], buf[64];
	struct dirent *de;
	int tasks = 0;
	pthread_t t;
	sigset_t set;
	DIR *d;

	zdtm_init();
	if (prctl(PR_SET_NAME, "ferry-main"))
		zdtm_fail("PR_SET_NAME");
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	if (pthread_create(&t, NULL, worker, NULL) || pthread_setname_np(t, "ferry-worker"))
		zdtm_fail("pthread_create/setname");
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	while (!worker_tid)
		zdtm_sleep_ms(1);
	zdtm_ready();

	zdtm_wait_stop();

	if (prctl(PR_GET_NAME, name) || strcmp(name, "ferry-main"))
		zdtm_fail("PR_GET_NAME says \"%s\"", name);
	if (zdtm_read_file("/proc/self/comm", buf, sizeof(buf)) < 0 || strcmp(buf, "ferry-main\n"))
		zdtm_fail("/proc/self/comm says \"%s\"", buf);
	d = opendir("/proc/self/task");
	while (d && (de = readdir(d))) {
		int tid = atoi(de->d_name);
		const char *want = tid == getpid() ? "ferry-main\n" : "ferry-worker\n";

		if (tid <= 0)
			continue;
		tasks++;
		if (tid != getpid() && tid != worker_tid)
			zdtm_fail("unexpected task %d", tid);
		snprintf(path, sizeof(path), "/proc/self/task/%d/comm", tid);
		if (zdtm_read_file(path, buf, sizeof(buf)) < 0 || strcmp(buf, want))
			zdtm_fail("task %d is named \"%.20s\", expected %s", tid, buf, want);
	}
	if (d)
		closedir(d);
	if (tasks != 2)
		zdtm_fail("%d tasks, expected 2", tasks);
	quit = 1;
	pthread_join(t, NULL);
	zdtm_pass();
}
