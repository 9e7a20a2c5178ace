/*
 * Signal state: a SIGUSR1 handler with SA_RESTART|SA_SIGINFO and a sa_mask,
 * SIGHUP ignored, SIGUSR2 blocked with one instance pending since before
 * READY. After the restore the harness sends SIGUSR1 (which must be counted)
 * and SIGTERM; then the dispositions, the blocked mask and the pending set
 * must be intact, and unblocking SIGUSR2 must run its handler.
 */
#include "zdtm.h"

static volatile sig_atomic_t usr1_count, usr1_bad_info, usr2_count;

static void on_usr1(int sig, siginfo_t *info, void *uc)
{
	(void)uc;
	if (sig != SIGUSR1 || info->si_signo != SIGUSR1 || info->si_code != SI_USER)
		usr1_bad_info = 1;
	usr1_count++;
}

static void on_usr2(int sig)
{
	(void)sig;
	usr2_count++;
}

int main(void)
{
	struct sigaction sa, old;
	sigset_t set;

	zdtm_init();
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_usr1;
	sa.sa_flags = SA_RESTART | SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGINT);
	sigaddset(&sa.sa_mask, SIGQUIT);
	if (sigaction(SIGUSR1, &sa, NULL))
		zdtm_fail("sigaction(SIGUSR1)");
	sa.sa_handler = on_usr2;
	sa.sa_flags = 0;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR2, &sa, NULL))
		zdtm_fail("sigaction(SIGUSR2)");
	signal(SIGHUP, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGUSR2);
	sigprocmask(SIG_BLOCK, &set, NULL);
	raise(SIGUSR2);
	zdtm_ready();

	zdtm_wait_stop();

	if (sigaction(SIGUSR1, NULL, &old))
		zdtm_fail("sigaction(SIGUSR1, NULL)");
	if (old.sa_sigaction != on_usr1)
		zdtm_fail("SIGUSR1 handler is %p, expected %p", (void *)old.sa_sigaction, (void *)on_usr1);
	if ((old.sa_flags & (SA_RESTART | SA_SIGINFO)) != (SA_RESTART | SA_SIGINFO) ||
	    (old.sa_flags & (SA_ONSTACK | SA_NODEFER | SA_RESETHAND)))
		zdtm_fail("SIGUSR1 flags are %#x", old.sa_flags);
	if (!sigismember(&old.sa_mask, SIGINT) || !sigismember(&old.sa_mask, SIGQUIT) ||
	    sigismember(&old.sa_mask, SIGHUP))
		zdtm_fail("SIGUSR1 sa_mask changed");
	if (sigaction(SIGUSR2, NULL, &old) || old.sa_handler != on_usr2)
		zdtm_fail("SIGUSR2 handler changed");
	if (sigaction(SIGHUP, NULL, &old) || old.sa_handler != SIG_IGN)
		zdtm_fail("SIGHUP is no longer ignored");
	if (usr1_count < 1)
		zdtm_fail("the SIGUSR1 sent before SIGTERM was not handled");
	if (usr1_bad_info)
		zdtm_fail("SIGUSR1 handler got a bad siginfo");

	sigprocmask(SIG_BLOCK, NULL, &set);
	if (!sigismember(&set, SIGUSR2) || sigismember(&set, SIGUSR1))
		zdtm_fail("blocked mask changed");
	sigpending(&set);
	if (!sigismember(&set, SIGUSR2))
		zdtm_fail("SIGUSR2 is no longer pending");
	if (sigismember(&set, SIGUSR1) || sigismember(&set, SIGHUP))
		zdtm_fail("unexpected pending signal");
	if (usr2_count != 0)
		zdtm_fail("blocked SIGUSR2 was delivered");
	sigemptyset(&set);
	sigaddset(&set, SIGUSR2);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	if (usr2_count != 1)
		zdtm_fail("pending SIGUSR2 delivered %d times after unblocking", (int)usr2_count);
	zdtm_pass();
}
