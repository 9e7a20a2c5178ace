/*
 * Parent-death signals and child subreapers: the root makes itself a child
 * subreaper (PR_SET_CHILD_SUBREAPER); its child A sets PR_SET_PDEATHSIG to
 * SIGUSR2 in its main thread and SIGWINCH in a second thread (the setting
 * is per thread). At SIGTERM the root checks it is still a subreaper and
 * asks A (SIGUSR1) to check both threads' signals; A then forks a
 * grandchild G and exits, and G, orphaned, must be adopted by the root
 * (the subreaper), which reaps it.
 */
#include "zdtm.h"
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/wait.h>

static volatile sig_atomic_t check;
static volatile int worker_ready, worker_done;
static int worker_signal = -1;

static void on_usr1(int sig)
{
	(void)sig;
	check = 1;
}

static int pdeath_signal(void)
{
	int sig = -1;

	if (prctl(PR_GET_PDEATHSIG, &sig, 0, 0, 0))
		return -1;
	return sig;
}

static void *worker(void *arg)
{
	(void)arg;
	if (prctl(PR_SET_PDEATHSIG, SIGWINCH, 0, 0, 0))
		_exit(20);
	worker_ready = 1;
	while (!check)
		zdtm_sleep_ms(10);
	worker_signal = pdeath_signal();
	worker_done = 1;
	return NULL;
}

/* Child A: reports G's PID through `report`, exits 0 if every check held. */
static void child(int report)
{
	pthread_t th;
	pid_t g;

	signal(SIGTERM, SIG_DFL);
	signal(SIGUSR1, on_usr1);
	if (prctl(PR_SET_PDEATHSIG, SIGUSR2, 0, 0, 0))
		_exit(10);
	if (pthread_create(&th, NULL, worker, NULL))
		_exit(11);
	while (!worker_ready)
		zdtm_sleep_ms(1);
	if (write(report, "", 1) != 1)
		_exit(12);
	while (!check)
		zdtm_sleep_ms(10);
	if (pdeath_signal() != SIGUSR2)
		_exit(13);
	while (!worker_done)
		zdtm_sleep_ms(1);
	if (worker_signal != SIGWINCH)
		_exit(14);
	g = fork();
	if (g < 0)
		_exit(15);
	if (g == 0) {
		for (;;)
			pause();
	}
	if (write(report, &g, sizeof g) != sizeof g)
		_exit(16);
	_exit(0);
}

static pid_t parent_of(pid_t pid)
{
	char path[64], buf[512], *p;

	snprintf(path, sizeof path, "/proc/%d/stat", pid);
	if (zdtm_read_file(path, buf, sizeof buf) < 0)
		return -1;
	p = strrchr(buf, ')');
	return p ? (pid_t)atoi(p + 4) : -1;
}

int main(void)
{
	int report[2], status, flag = -1;
	char ready;
	pid_t a, g;

	zdtm_init();
	if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0))
		zdtm_fail("PR_SET_CHILD_SUBREAPER: %s", strerror(errno));
	if (pipe(report))
		zdtm_fail("pipe: %s", strerror(errno));
	a = fork();
	if (a < 0)
		zdtm_fail("fork: %s", strerror(errno));
	if (a == 0) {
		close(report[0]);
		child(report[1]);
	}
	close(report[1]);
	if (read(report[0], &ready, 1) != 1)
		zdtm_fail("the child did not get ready");
	zdtm_ready();
	zdtm_wait_stop();
	if (prctl(PR_GET_CHILD_SUBREAPER, &flag, 0, 0, 0) || flag != 1)
		zdtm_fail("the root is no longer a child subreaper (%d)", flag);
	kill(a, SIGUSR1);
	if (waitpid(a, &status, 0) != a)
		zdtm_fail("waitpid(A): %s", strerror(errno));
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		zdtm_fail("A ended with status %#x (13: its pdeath signal, 14: its thread's)",
			  status);
	if (read(report[0], &g, sizeof g) != sizeof g)
		zdtm_fail("A did not report its child");
	/* A is gone: its child G must now be the root's. */
	for (int i = 0; parent_of(g) != getpid(); i++) {
		if (i == 500)
			zdtm_fail("G %d has parent %d, not the subreaper %d", g, parent_of(g),
				  getpid());
		zdtm_sleep_ms(10);
	}
	kill(g, SIGKILL);
	if (waitpid(g, &status, 0) != g)
		zdtm_fail("waitpid(G): %s", strerror(errno));
	zdtm_pass();
}
