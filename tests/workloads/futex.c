/*
 * A thread blocked in FUTEX_WAIT (no timeout) at checkpoint time must still be
 * waiting after the restore and return 0 (or EAGAIN) when main wakes it on
 * SIGTERM: never early, never a leaked kernel code such as -512.
 */
#include "zdtm.h"
#include <linux/futex.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/syscall.h>

static uint32_t word;
static volatile pid_t waiter_tid;
static volatile long wait_ret = 1;
static volatile int wait_errno;
static volatile uint32_t word_seen;

static void *waiter(void *arg)
{
	sigset_t all;

	(void)arg;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	waiter_tid = (pid_t)syscall(SYS_gettid);
	errno = 0;
	wait_ret = syscall(SYS_futex, &word, FUTEX_WAIT, 0, NULL, NULL, 0);
	wait_errno = errno;
	word_seen = __atomic_load_n(&word, __ATOMIC_SEQ_CST);
	return NULL;
}

/* True once the waiter sits in the futex syscall (number 202 on x86-64). */
static int waiter_blocked(void)
{
	char path[64], buf[256];

	snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", waiter_tid);
	if (zdtm_read_file(path, buf, sizeof(buf)) < 0)
		return 0;
	return strncmp(buf, "202 ", 4) == 0;
}

int main(void)
{
	pthread_t t;
	int i;

	zdtm_init();
	if (pthread_create(&t, NULL, waiter, NULL))
		zdtm_fail("pthread_create");
	for (i = 0; !waiter_tid || !waiter_blocked(); i++) {
		if (i > 5000)
			zdtm_fail("waiter never blocked in futex");
		zdtm_sleep_ms(1);
	}
	zdtm_ready();

	zdtm_wait_stop();

	if (wait_ret != 1)
		zdtm_fail("futex wait returned before the wake: ret %ld errno %d", wait_ret, wait_errno);
	__atomic_store_n(&word, 1, __ATOMIC_SEQ_CST);
	while (wait_ret == 1) {
		syscall(SYS_futex, &word, FUTEX_WAKE, 1, NULL, NULL, 0);
		zdtm_sleep_ms(1);
	}
	pthread_join(t, NULL);
	if (!(wait_ret == 0 || (wait_ret == -1 && wait_errno == EAGAIN)))
		zdtm_fail("futex wait returned %ld errno %d (%s)", wait_ret, wait_errno, strerror(wait_errno));
	if (word_seen != 1)
		zdtm_fail("futex wait returned while the word was still %u", word_seen);
	zdtm_pass();
}
