/*
 * timerfd: a periodic CLOCK_MONOTONIC timer (20 ms, O_NONBLOCK) left
 * unread; a one-shot CLOCK_BOOTTIME timer 1000 s away; a one-shot that
 * expired before READY and was not read; a CLOCK_REALTIME timer at an
 * absolute time 1000 s away. At SIGTERM: the periodic timer reports its
 * expirations and keeps firing, the far timers have about their remaining
 * time (the time the process was not running may be added), the expired
 * one reports its one expiration, and the absolute one keeps its deadline
 * and TFD_TIMER_ABSTIME.
 */
#include "zdtm.h"
#include <fcntl.h>
#include <stdint.h>
#include <sys/timerfd.h>

#define FAR 1000

static double left(int fd)
{
	struct itimerspec its;

	if (timerfd_gettime(fd, &its))
		zdtm_fail("timerfd_gettime: %s", strerror(errno));
	return (double)its.it_value.tv_sec + (double)its.it_value.tv_nsec / 1e9;
}

static double wall_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(void)
{
	struct itimerspec periodic = { { 0, 20000000 }, { 0, 20000000 } };
	struct itimerspec far = { { 0, 0 }, { FAR, 0 } };
	struct itimerspec soon = { { 0, 0 }, { 0, 1000000 } };
	struct itimerspec at = { { 0, 0 }, { 0, 0 } };
	int tick, boot, expired, wall;
	double armed, deadline, l;
	uint64_t n;
	char path[64], info[1024];

	zdtm_init();
	tick = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
	boot = timerfd_create(CLOCK_BOOTTIME, 0);
	expired = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
	wall = timerfd_create(CLOCK_REALTIME, 0);
	if (tick < 0 || boot < 0 || expired < 0 || wall < 0)
		zdtm_fail("timerfd_create: %s", strerror(errno));
	armed = zdtm_now();
	deadline = (double)((long)wall_now() + FAR);
	at.it_value.tv_sec = (time_t)deadline;
	if (timerfd_settime(tick, 0, &periodic, NULL) || timerfd_settime(boot, 0, &far, NULL) ||
	    timerfd_settime(expired, 0, &soon, NULL) ||
	    timerfd_settime(wall, TFD_TIMER_ABSTIME, &at, NULL))
		zdtm_fail("timerfd_settime: %s", strerror(errno));
	zdtm_sleep_ms(10);
	zdtm_ready();
	zdtm_wait_stop();

	if (!(fcntl(tick, F_GETFL) & O_NONBLOCK) || (fcntl(boot, F_GETFL) & O_NONBLOCK))
		zdtm_fail("O_NONBLOCK is not as set");
	if (read(tick, &n, sizeof n) != sizeof n || n < 1)
		zdtm_fail("the periodic timer reports no expiration: %s", strerror(errno));
	for (int i = 0; i < 3; i++) {
		zdtm_sleep_ms(50);
		if (read(tick, &n, sizeof n) != sizeof n || n < 1)
			zdtm_fail("the periodic timer stopped firing: %s", strerror(errno));
	}
	if (read(expired, &n, sizeof n) != sizeof n || n != 1)
		zdtm_fail("the expired timer reports %llu expirations: %s", (unsigned long long)n,
			  strerror(errno));
	if (read(expired, &n, sizeof n) != -1 || errno != EAGAIN)
		zdtm_fail("the expired timer expired again");
	l = left(boot);
	if (l > FAR || l < FAR - (zdtm_now() - armed) - 1)
		zdtm_fail("the far timer has %.3f s left, %.3f s after it was armed for %d s", l,
			  zdtm_now() - armed, FAR);
	l = left(wall);
	if (l > deadline - wall_now() + 1 || l < deadline - wall_now() - 1)
		zdtm_fail("the absolute timer has %.3f s left, its deadline is %.3f s away", l,
			  deadline - wall_now());
	snprintf(path, sizeof path, "/proc/self/fdinfo/%d", wall);
	if (zdtm_read_file(path, info, sizeof info) < 0 || !strstr(info, "settime flags: 01"))
		zdtm_fail("the absolute timer lost TFD_TIMER_ABSTIME: %s", info);
	zdtm_pass();
}
