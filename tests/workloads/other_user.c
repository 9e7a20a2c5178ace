/*
 * A process of another user, as PostgreSQL's and nginx's workers are: the
 * root's child sets distinctive resource limits (RLIMIT_NOFILE 1000/4000,
 * RLIMIT_CORE 0/unlimited, RLIMIT_STACK 7 MiB, RLIMIT_MSGQUEUE
 * 123456/654321), drops its supplementary groups and becomes nobody
 * (65534:65534) for its real, effective and saved IDs, and records all 16
 * limits. Like nginx's workers, it then makes itself dumpable again
 * (PR_SET_DUMPABLE 1: the change of user cleared it), so that its user may
 * read its /proc files. At SIGTERM the root asks it (SIGUSR1) to check its
 * IDs, that it is still dumpable, and that every limit is exactly as
 * recorded (RLIM_INFINITY included); it reports through a pipe and its exit
 * status.
 */
#include "zdtm.h"
#include <grp.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>

#define NOBODY 65534
#define NLIMITS 16

static volatile sig_atomic_t check;

static void on_usr1(int sig)
{
	(void)sig;
	check = 1;
}

/* Writes the reason to the report pipe and exits 1. */
__attribute__((format(printf, 2, 3), noreturn))
static void child_fail(int report, const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof msg - 1)
		n = (int)sizeof msg - 1;
	if (write(report, msg, (size_t)n) < 0)
		_exit(2);
	_exit(1);
}

static void set_limit(int report, int resource, rlim_t soft, rlim_t hard)
{
	struct rlimit r = { soft, hard };

	if (setrlimit(resource, &r))
		child_fail(report, "setrlimit(%d, %llu, %llu): %s", resource,
			   (unsigned long long)soft, (unsigned long long)hard, strerror(errno));
}

static void child(int report)
{
	struct rlimit want[NLIMITS], core, stack;
	uid_t ru, eu, su;
	gid_t rg, eg, sg;

	signal(SIGTERM, SIG_DFL);
	signal(SIGUSR1, on_usr1);
	if (getrlimit(RLIMIT_CORE, &core))
		child_fail(report, "getrlimit(RLIMIT_CORE): %s", strerror(errno));
	if (getrlimit(RLIMIT_STACK, &stack))
		child_fail(report, "getrlimit(RLIMIT_STACK): %s", strerror(errno));
	if (core.rlim_max != RLIM_INFINITY)
		child_fail(report, "run this with an unlimited hard RLIMIT_CORE");
	set_limit(report, RLIMIT_NOFILE, 1000, 4000);
	set_limit(report, RLIMIT_CORE, 0, RLIM_INFINITY);
	set_limit(report, RLIMIT_STACK, 7 << 20, stack.rlim_max);
	set_limit(report, RLIMIT_MSGQUEUE, 123456, 654321);
	if (setgroups(0, NULL))
		child_fail(report, "setgroups: %s", strerror(errno));
	if (setresgid(NOBODY, NOBODY, NOBODY))
		child_fail(report, "setresgid: %s", strerror(errno));
	if (setresuid(NOBODY, NOBODY, NOBODY))
		child_fail(report, "setresuid: %s", strerror(errno));
	if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0))
		child_fail(report, "PR_SET_DUMPABLE: %s", strerror(errno));
	for (int i = 0; i < NLIMITS; i++)
		if (getrlimit(i, &want[i]))
			child_fail(report, "getrlimit(%d): %s", i, strerror(errno));
	if (write(report, "", 1) != 1)
		_exit(2);
	while (!check)
		zdtm_sleep_ms(10);
	if (getresuid(&ru, &eu, &su) || ru != NOBODY || eu != NOBODY || su != NOBODY)
		child_fail(report, "uids %u %u %u, want %d", ru, eu, su, NOBODY);
	if (getresgid(&rg, &eg, &sg) || rg != NOBODY || eg != NOBODY || sg != NOBODY)
		child_fail(report, "gids %u %u %u, want %d", rg, eg, sg, NOBODY);
	if (prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 1)
		child_fail(report, "dumpable is %d, want 1", prctl(PR_GET_DUMPABLE, 0, 0, 0, 0));
	if (getgroups(0, NULL) != 0)
		child_fail(report, "%d supplementary groups, want none", getgroups(0, NULL));
	for (int i = 0; i < NLIMITS; i++) {
		struct rlimit got;

		if (getrlimit(i, &got))
			child_fail(report, "getrlimit(%d): %s", i, strerror(errno));
		if (got.rlim_cur != want[i].rlim_cur || got.rlim_max != want[i].rlim_max)
			child_fail(report, "limit %d is %llu/%llu, want %llu/%llu", i,
				   (unsigned long long)got.rlim_cur,
				   (unsigned long long)got.rlim_max,
				   (unsigned long long)want[i].rlim_cur,
				   (unsigned long long)want[i].rlim_max);
	}
	_exit(0);
}

int main(void)
{
	int report[2], status;
	char msg[256];
	ssize_t n;
	pid_t c;

	zdtm_init();
	if (getuid() != 0)
		zdtm_fail("run this as root");
	if (pipe(report))
		zdtm_fail("pipe: %s", strerror(errno));
	c = fork();
	if (c < 0)
		zdtm_fail("fork: %s", strerror(errno));
	if (c == 0) {
		close(report[0]);
		child(report[1]);
	}
	close(report[1]);
	n = read(report[0], msg, sizeof msg - 1);
	if (n != 1)
		zdtm_fail("the child did not get ready: %.*s", n > 0 ? (int)n : 0, msg);
	zdtm_ready();
	zdtm_wait_stop();
	kill(c, SIGUSR1);
	n = read(report[0], msg, sizeof msg - 1);
	if (waitpid(c, &status, 0) != c)
		zdtm_fail("waitpid: %s", strerror(errno));
	if (n > 0)
		zdtm_fail("the child: %.*s", (int)n, msg);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		zdtm_fail("the child ended with status %#x", status);
	zdtm_pass();
}
