/*
 * Interval timers: ITIMER_REAL fires SIGALRM every 25 ms and a far
 * ITIMER_VIRTUAL is armed. At SIGTERM: the SIGALRM handler keeps being
 * called, ITIMER_REAL keeps its interval, and ITIMER_VIRTUAL is still
 * armed.
 */
#include "zdtm.h"
#include <sys/time.h>

static volatile sig_atomic_t alarms;

static void on_alarm(int sig)
{
	(void)sig;
	alarms++;
}

int main(void)
{
	struct sigaction sa;
	struct itimerval it, got;
	double wait_until;
	int before;

	zdtm_init();
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_alarm;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGALRM, &sa, NULL))
		zdtm_fail("sigaction: %s", strerror(errno));
	it.it_interval.tv_sec = 0;
	it.it_interval.tv_usec = 25000;
	it.it_value = it.it_interval;
	if (setitimer(ITIMER_REAL, &it, NULL))
		zdtm_fail("setitimer(ITIMER_REAL): %s", strerror(errno));
	memset(&it, 0, sizeof it);
	it.it_value.tv_sec = 1000;
	if (setitimer(ITIMER_VIRTUAL, &it, NULL))
		zdtm_fail("setitimer(ITIMER_VIRTUAL): %s", strerror(errno));
	zdtm_ready();
	zdtm_wait_stop();

	if (getitimer(ITIMER_REAL, &got))
		zdtm_fail("getitimer: %s", strerror(errno));
	if (got.it_interval.tv_sec != 0 || got.it_interval.tv_usec != 25000)
		zdtm_fail("ITIMER_REAL's interval is %ld.%06ld", (long)got.it_interval.tv_sec,
			  (long)got.it_interval.tv_usec);
	before = alarms;
	wait_until = zdtm_now() + 0.3;
	while (zdtm_now() < wait_until)
		zdtm_sleep_ms(10);
	if (alarms - before < 5)
		zdtm_fail("SIGALRM came %d times in 300 ms", alarms - before);
	if (getitimer(ITIMER_VIRTUAL, &got))
		zdtm_fail("getitimer: %s", strerror(errno));
	if (got.it_value.tv_sec < 990)
		zdtm_fail("ITIMER_VIRTUAL has %ld s left", (long)got.it_value.tv_sec);
	zdtm_pass();
}
