/*
 * Seccomp filters: with no_new_privs set, a filter makes getppid() fail
 * with EPERM (SECCOMP_RET_ERRNO) and a second, newer one makes getpgrp()
 * fail with EACCES; a thread started afterwards inherits both, and a
 * second thread adds a third filter of its own (getsid() fails with
 * ENOENT in it alone, as CRIU's seccomp_filter_threads has). At SIGTERM,
 * in every thread, the calls still fail so, other calls work, and /proc
 * reports seccomp mode 2 with 2 filters (3 in the second thread).
 */
#include "zdtm.h"
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

static void install(long nr, int err)
{
	struct sock_filter prog[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 0, 3),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (unsigned)err),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog fprog = { sizeof prog / sizeof prog[0], prog };

	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog))
		zdtm_fail("seccomp: %s", strerror(errno));
}

/* NULL when the calls behave as the filters say, else what is wrong. */
static const char *check(void)
{
	errno = 0;
	if (syscall(SYS_getppid) != -1 || errno != EPERM)
		return "getppid() did not fail with EPERM";
	errno = 0;
	if (syscall(SYS_getpgrp) != -1 || errno != EACCES)
		return "getpgrp() did not fail with EACCES";
	if (syscall(SYS_getpid) != getpid() || syscall(SYS_gettid) <= 0)
		return "getpid() or gettid() failed";
	return NULL;
}

static const char *worker_result = "the worker did not run";
static const char *own_result = "the thread with its own filter did not run";
static volatile int own_ready;

static void *worker(void *arg)
{
	(void)arg;
	while (!zdtm_stop)
		zdtm_sleep_ms(10);
	worker_result = check();
	return NULL;
}

/* Adds a filter of its own (no TSYNC: the other threads keep two). */
static void *own_filter(void *arg)
{
	char status[4096];

	(void)arg;
	install(SYS_getsid, ENOENT);
	own_ready = 1;
	while (!zdtm_stop)
		zdtm_sleep_ms(10);
	own_result = check();
	errno = 0;
	if (!own_result && (syscall(SYS_getsid, 0) != -1 || errno != ENOENT))
		own_result = "getsid() did not fail with ENOENT";
	if (!own_result && zdtm_read_file("/proc/thread-self/status", status, sizeof status) < 0)
		own_result = "cannot read /proc/thread-self/status";
	if (!own_result && !strstr(status, "Seccomp_filters:\t3\n"))
		own_result = "/proc/thread-self/status does not show 3 seccomp filters";
	return NULL;
}

int main(void)
{
	char status[4096];
	const char *why;
	pthread_t th, own;

	zdtm_init();
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		zdtm_fail("PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
	install(SYS_getppid, EPERM);
	install(SYS_getpgrp, EACCES);
	if ((why = check()))
		zdtm_fail("before checkpoint: %s", why);
	if (pthread_create(&th, NULL, worker, NULL))
		zdtm_fail("pthread_create");
	if (pthread_create(&own, NULL, own_filter, NULL))
		zdtm_fail("pthread_create");
	while (!own_ready)
		zdtm_sleep_ms(1);
	zdtm_ready();
	zdtm_wait_stop();

	pthread_join(th, NULL);
	pthread_join(own, NULL);
	if (worker_result)
		zdtm_fail("in the worker: %s", worker_result);
	if (own_result)
		zdtm_fail("in the thread with its own filter: %s", own_result);
	errno = 0;
	if (syscall(SYS_getsid, 0) < 0)
		zdtm_fail("getsid() fails outside the thread that filtered it: %s", strerror(errno));
	if ((why = check()))
		zdtm_fail("%s", why);
	if (zdtm_read_file("/proc/self/status", status, sizeof status) < 0)
		zdtm_fail("reading /proc/self/status: %s", strerror(errno));
	if (!strstr(status, "Seccomp:\t2\n") || !strstr(status, "Seccomp_filters:\t2\n"))
		zdtm_fail("/proc/self/status does not show 2 seccomp filters");
	if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1)
		zdtm_fail("no_new_privs was lost");
	zdtm_pass();
}
