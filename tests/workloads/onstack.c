/*
 * A SIGTERM handler installed with SA_ONSTACK while the thread has no
 * alternate signal stack (as CPython installs its handlers): after restore
 * the handler must run on the normal stack. A restore that leaked the
 * restoring tool's own alternate stack into the process would crash here
 * at the first signal.
 */
#include "zdtm.h"

static volatile sig_atomic_t caught;

static void on_usr1(int sig)
{
	(void)sig;
	caught++;
}

int main(void)
{
	struct sigaction sa = { 0 };
	stack_t ss;

	zdtm_init();
	sa.sa_handler = on_usr1;
	sa.sa_flags = SA_ONSTACK | SA_RESTART;
	if (sigaction(SIGUSR1, &sa, NULL))
		zdtm_fail("sigaction: %s", strerror(errno));
	zdtm_ready();
	zdtm_wait_stop();
	if (sigaltstack(NULL, &ss) || !(ss.ss_flags & SS_DISABLE))
		zdtm_fail("an alternate signal stack appeared (flags %d, sp %p)", ss.ss_flags, ss.ss_sp);
	if (caught != 1)
		zdtm_fail("the SA_ONSTACK SIGUSR1 handler ran %d times", (int)caught);
	zdtm_pass();
}
