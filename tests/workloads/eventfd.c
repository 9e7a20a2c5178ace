/*
 * eventfd: a non-blocking counter of 5 in semaphore mode, dup'ed (both fds
 * share one counter); a blocking counter of 42; a counter above 2^32. At
 * SIGTERM: the semaphore yields exactly five reads of 1 (through either
 * fd) then EAGAIN, the others their whole counts, the flags are as set,
 * and the counters still count.
 */
#include "zdtm.h"
#include <fcntl.h>
#include <stdint.h>
#include <sys/eventfd.h>

#define BIG 0x100000005ULL

static uint64_t take(int fd, const char *name)
{
	uint64_t v;

	if (read(fd, &v, sizeof v) != sizeof v)
		zdtm_fail("reading %s: %s", name, strerror(errno));
	return v;
}

int main(void)
{
	int sem, twin, plain, big;
	uint64_t v = BIG;

	zdtm_init();
	sem = eventfd(5, EFD_SEMAPHORE | EFD_NONBLOCK);
	plain = eventfd(42, 0);
	big = eventfd(0, EFD_NONBLOCK);
	if (sem < 0 || plain < 0 || big < 0)
		zdtm_fail("eventfd: %s", strerror(errno));
	twin = dup(sem);
	if (twin < 0 || write(big, &v, sizeof v) != sizeof v)
		zdtm_fail("setting up: %s", strerror(errno));
	zdtm_ready();
	zdtm_wait_stop();

	if (!(fcntl(sem, F_GETFL) & O_NONBLOCK) || (fcntl(plain, F_GETFL) & O_NONBLOCK))
		zdtm_fail("O_NONBLOCK is %#x on the semaphore, %#x on the plain counter",
			  fcntl(sem, F_GETFL) & O_NONBLOCK, fcntl(plain, F_GETFL) & O_NONBLOCK);
	for (int i = 0; i < 5; i++)
		if ((v = take(i % 2 ? twin : sem, "the semaphore")) != 1)
			zdtm_fail("semaphore read %d returned %llu", i, (unsigned long long)v);
	if (read(twin, &v, sizeof v) != -1 || errno != EAGAIN)
		zdtm_fail("the semaphore did not run out after five reads");
	if ((v = take(plain, "the plain counter")) != 42)
		zdtm_fail("the plain counter read %llu", (unsigned long long)v);
	if ((v = take(big, "the big counter")) != BIG)
		zdtm_fail("the big counter read %#llx", (unsigned long long)v);
	v = 7;
	if (write(plain, &v, sizeof v) != sizeof v || take(plain, "the plain counter") != 7)
		zdtm_fail("the plain counter no longer counts");
	v = 2;
	if (write(sem, &v, sizeof v) != sizeof v || take(twin, "the semaphore") != 1 ||
	    take(twin, "the semaphore") != 1)
		zdtm_fail("the semaphore no longer counts, or its fds no longer share it");
	zdtm_pass();
}
