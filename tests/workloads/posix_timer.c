/*
 * POSIX timers: a periodic CLOCK_MONOTONIC timer delivers SIGUSR2 every
 * 20 ms, and a one-shot CLOCK_REALTIME timer is set 1000 s ahead. At
 * SIGTERM: both timers still exist under the IDs they were created with,
 * the periodic one keeps firing (with its sigev_value), and the far one has
 * roughly the time left that it had (it did not restart or fire).
 */
#include "zdtm.h"

#define FAR_S 1000

static volatile sig_atomic_t ticks;
static volatile sig_atomic_t bad_value;

static void on_tick(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	if (si->si_code == SI_TIMER && si->si_value.sival_int != 42)
		bad_value = 1;
	ticks++;
}

int main(void)
{
	struct sigaction sa;
	struct sigevent ev;
	struct itimerspec spec, left;
	timer_t periodic, far;
	double start, wait_until;
	int before;

	zdtm_init();
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_tick;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR2, &sa, NULL))
		zdtm_fail("sigaction: %s", strerror(errno));
	memset(&ev, 0, sizeof ev);
	ev.sigev_notify = SIGEV_SIGNAL;
	ev.sigev_signo = SIGUSR2;
	ev.sigev_value.sival_int = 42;
	/* A few timers first, so the interesting IDs are not simply 0. */
	for (int i = 0; i < 3; i++) {
		timer_t spare;

		if (timer_create(CLOCK_MONOTONIC, &ev, &spare))
			zdtm_fail("timer_create: %s", strerror(errno));
		if (i != 1 && timer_delete(spare))
			zdtm_fail("timer_delete: %s", strerror(errno));
	}
	if (timer_create(CLOCK_MONOTONIC, &ev, &periodic))
		zdtm_fail("timer_create: %s", strerror(errno));
	ev.sigev_notify = SIGEV_NONE;
	if (timer_create(CLOCK_REALTIME, &ev, &far))
		zdtm_fail("timer_create: %s", strerror(errno));
	spec.it_interval.tv_sec = 0;
	spec.it_interval.tv_nsec = 20 * 1000000L;
	spec.it_value = spec.it_interval;
	if (timer_settime(periodic, 0, &spec, NULL))
		zdtm_fail("timer_settime: %s", strerror(errno));
	memset(&spec, 0, sizeof spec);
	spec.it_value.tv_sec = FAR_S;
	if (timer_settime(far, 0, &spec, NULL))
		zdtm_fail("timer_settime: %s", strerror(errno));
	start = zdtm_now();
	zdtm_ready();
	zdtm_wait_stop();

	if (timer_gettime(periodic, &left))
		zdtm_fail("timer %ld is gone: %s", (long)periodic, strerror(errno));
	if (left.it_interval.tv_nsec != 20 * 1000000L || left.it_interval.tv_sec != 0)
		zdtm_fail("the periodic timer's interval is %ld.%09ld", (long)left.it_interval.tv_sec,
			  left.it_interval.tv_nsec);
	before = ticks;
	wait_until = zdtm_now() + 0.3;
	while (zdtm_now() < wait_until)
		zdtm_sleep_ms(10);
	if (ticks - before < 5)
		zdtm_fail("the periodic timer fired %d times in 300 ms", ticks - before);
	if (bad_value)
		zdtm_fail("a timer signal carried the wrong sigev_value");
	if (timer_gettime(far, &left))
		zdtm_fail("timer %ld is gone: %s", (long)far, strerror(errno));
	/* Left: at most FAR_S - elapsed (+ slack), at least that minus 60 s. */
	{
		double elapsed = zdtm_now() - start;
		double rest = (double)left.it_value.tv_sec + left.it_value.tv_nsec / 1e9;

		if (rest > FAR_S - elapsed + 1 || rest < FAR_S - elapsed - 60)
			zdtm_fail("the far timer has %.3f s left after %.3f s", rest, elapsed);
	}
	zdtm_pass();
}
