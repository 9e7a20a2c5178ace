/*
 * sigaltstack: the checkpoint happens while a SA_ONSTACK SIGUSR2 handler runs
 * on the alternate stack (raised before READY, it prints READY and spins
 * until SIGTERM). The SIGUSR1 the harness sends meanwhile must also run on
 * the alternate stack, and so must one raised by main after the SIGUSR2
 * handler returned, which uses the restored sigaltstack() settings; those
 * must be unchanged.
 */
#include "zdtm.h"

#define ALT_SIZE (64 * 1024)

static char *alt;
static volatile sig_atomic_t usr1_count, usr1_off_stack, usr2_done, usr2_off_stack, usr2_flags;

static int on_altstack(const void *p)
{
	return (const char *)p >= alt && (const char *)p < alt + ALT_SIZE;
}

static void on_usr1(int sig)
{
	int local;

	(void)sig;
	if (!on_altstack(&local))
		usr1_off_stack = 1;
	usr1_count++;
}

static void on_usr2(int sig)
{
	stack_t ss;
	int local;

	(void)sig;
	if (!on_altstack(&local))
		usr2_off_stack = 1;
	zdtm_ready();
	zdtm_wait_stop();
	if (!on_altstack(&local))
		usr2_off_stack = 1;
	sigaltstack(NULL, &ss);
	usr2_flags = ss.ss_flags;
	usr2_done = 1;
}

int main(void)
{
	struct sigaction sa;
	stack_t ss;
	int n;

	zdtm_init();
	alt = malloc(ALT_SIZE);
	if (!alt)
		zdtm_fail("malloc");
	ss.ss_sp = alt;
	ss.ss_size = ALT_SIZE;
	ss.ss_flags = 0;
	if (sigaltstack(&ss, NULL))
		zdtm_fail("sigaltstack: %s", strerror(errno));
	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_ONSTACK;
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_handler = on_usr2;
	sigaction(SIGUSR2, &sa, NULL);

	raise(SIGUSR2);

	if (!usr2_done)
		zdtm_fail("SIGUSR2 handler did not finish");
	if (usr2_off_stack)
		zdtm_fail("SIGUSR2 handler ran off the alternate stack");
	if (!(usr2_flags & SS_ONSTACK))
		zdtm_fail("sigaltstack() in the handler reported flags %#x, not SS_ONSTACK", (int)usr2_flags);
	if (usr1_count < 1)
		zdtm_fail("the SIGUSR1 sent before SIGTERM was not handled");
	if (usr1_off_stack)
		zdtm_fail("SIGUSR1 handler (nested) ran off the alternate stack");
	if (sigaltstack(NULL, &ss))
		zdtm_fail("sigaltstack(NULL)");
	if (ss.ss_sp != alt || ss.ss_size != ALT_SIZE || ss.ss_flags != 0)
		zdtm_fail("sigaltstack is %p/%zu/%#x, expected %p/%d/0",
			  ss.ss_sp, ss.ss_size, ss.ss_flags, (void *)alt, ALT_SIZE);
	n = usr1_count;
	raise(SIGUSR1);
	if (usr1_count != n + 1 || usr1_off_stack)
		zdtm_fail("SIGUSR1 raised from main did not run on the alternate stack");
	zdtm_pass();
}
