/*
 * Job-control stopped children: S is stopped by SIGSTOP, T (leading a
 * process group of its own, so that its group is not orphaned and the
 * kernel does not discard SIGTSTP) by SIGTSTP. Both count in a shared
 * page while they run. The parent consumes both stop reports with
 * waitid(WSTOPPED) before READY. At SIGTERM each child must still be
 * stopped ('T' in /proc/PID/stat, its counter still), then SIGCONT must
 * resume it: waitid(WCONTINUED) reports it and its counter moves again.
 */
#include "zdtm.h"
#include <sys/mman.h>
#include <sys/wait.h>

static volatile unsigned long *counters;

static void count(int i)
{
	signal(SIGTERM, SIG_DFL);
	for (;;) {
		counters[i]++;
		zdtm_sleep_ms(1);
	}
}

static pid_t start(int i, int own_group)
{
	pid_t pid = fork();

	if (pid < 0)
		zdtm_fail("fork: %s", strerror(errno));
	if (pid == 0) {
		if (own_group)
			setpgid(0, 0);
		count(i);
	}
	if (own_group)
		setpgid(pid, pid);
	while (counters[i] == 0)
		zdtm_sleep_ms(1);
	return pid;
}

static void stop(pid_t pid, int sig)
{
	siginfo_t info;

	if (kill(pid, sig))
		zdtm_fail("kill(%d, %d): %s", pid, sig, strerror(errno));
	memset(&info, 0, sizeof info);
	if (waitid(P_PID, (id_t)pid, &info, WSTOPPED))
		zdtm_fail("waitid(WSTOPPED) of %d: %s", pid, strerror(errno));
	if (info.si_code != CLD_STOPPED || info.si_status != sig)
		zdtm_fail("child %d reported code %d status %d, not stopped by %d",
			  pid, info.si_code, info.si_status, sig);
}

static void check(pid_t pid, int i)
{
	unsigned long before;
	siginfo_t info;
	int status;

	if (zdtm_state_of(pid) != 'T')
		zdtm_fail("child %d is in state %c, not stopped", pid, zdtm_state_of(pid));
	before = counters[i];
	zdtm_sleep_ms(50);
	if (counters[i] != before)
		zdtm_fail("stopped child %d counted on", pid);
	if (kill(pid, SIGCONT))
		zdtm_fail("kill(%d, SIGCONT): %s", pid, strerror(errno));
	memset(&info, 0, sizeof info);
	if (waitid(P_PID, (id_t)pid, &info, WCONTINUED))
		zdtm_fail("waitid(WCONTINUED) of %d: %s", pid, strerror(errno));
	if (info.si_code != CLD_CONTINUED)
		zdtm_fail("child %d reported code %d, not continued", pid, info.si_code);
	for (int n = 0; counters[i] == before; n++) {
		if (n == 2000)
			zdtm_fail("child %d does not run after SIGCONT", pid);
		zdtm_sleep_ms(1);
	}
	if (zdtm_state_of(pid) == 'T')
		zdtm_fail("child %d is still stopped after SIGCONT", pid);
	kill(pid, SIGKILL);
	if (waitpid(pid, &status, 0) != pid || !WIFSIGNALED(status))
		zdtm_fail("child %d did not die of SIGKILL (%#x)", pid, status);
}

int main(void)
{
	pid_t s, t;

	zdtm_init();
	counters = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
			MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (counters == MAP_FAILED)
		zdtm_fail("mmap: %s", strerror(errno));
	s = start(0, 0);
	t = start(1, 1);
	stop(s, SIGSTOP);
	stop(t, SIGTSTP);
	zdtm_ready();
	zdtm_wait_stop();
	check(s, 0);
	check(t, 1);
	zdtm_pass();
}
