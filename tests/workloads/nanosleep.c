/*
 * A process sleeping in nanosleep() at checkpoint time: each 50 ms sleep must
 * return 0 after at least 50 ms, or EINTR only because the SIGTERM handler
 * ran; a restart code leaking out (e.g. errno 516) or an early return fails.
 */
#include "zdtm.h"

#define SLEEP_NS 50000000L

int main(void)
{
	struct timespec req = { 0, SLEEP_NS };
	double start, before, after;
	unsigned long iterations = 0;
	int ret, err;

	zdtm_init();
	start = zdtm_now();
	zdtm_ready();

	for (;;) {
		before = zdtm_now();
		ret = nanosleep(&req, NULL);
		err = errno;
		after = zdtm_now();
		if (ret == -1 && err == EINTR && zdtm_stop)
			break;
		if (ret != 0)
			zdtm_fail("nanosleep returned %d errno %d (%s) at iteration %lu",
				  ret, err, strerror(err), iterations);
		if (after - before < SLEEP_NS / 1e9 - 0.001)
			zdtm_fail("nanosleep returned early after %.3f s at iteration %lu",
				  after - before, iterations);
		iterations++;
		if (zdtm_stop)
			break;
	}
	if (after <= start)
		zdtm_fail("monotonic time did not advance");
	if (iterations * (SLEEP_NS / 1e9) > after - start + 0.01)
		zdtm_fail("%lu sleeps of 50 ms in %.3f s", iterations, after - start);
	zdtm_pass();
}
