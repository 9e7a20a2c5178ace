/*
 * Threads: four threads each increment their own counter. After the restore
 * all four must still be counting (sampled again on SIGTERM, 100 ms apart) and
 * each must still have the TID it had before.
 */
#include "zdtm.h"
#include <pthread.h>
#include <sys/syscall.h>

#define NTHREADS 4

struct worker {
	pthread_t thread;
	volatile pid_t tid;
	volatile int tid_changed;
	volatile unsigned long count;
	char pad[64];
};

static struct worker workers[NTHREADS];
static volatile int quit;

static void *work(void *arg)
{
	struct worker *w = arg;

	w->tid = (pid_t)syscall(SYS_gettid);
	while (!quit)
		w->count++;
	w->tid_changed = (pid_t)syscall(SYS_gettid) != w->tid;
	return NULL;
}

int main(void)
{
	unsigned long first[NTHREADS];
	int i, tries, moved;
	sigset_t set;

	zdtm_init();
	/* Only the main thread takes SIGTERM. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	for (i = 0; i < NTHREADS; i++)
		if (pthread_create(&workers[i].thread, NULL, work, &workers[i]))
			zdtm_fail("pthread_create");
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	for (i = 0; i < NTHREADS; i++)
		while (workers[i].count == 0)
			zdtm_sleep_ms(1);
	zdtm_ready();

	zdtm_wait_stop();

	/* Sample every 100 ms, for up to 10 s on a busy machine, until all moved. */
	for (i = 0; i < NTHREADS; i++)
		first[i] = workers[i].count;
	for (tries = 0, moved = 0; moved < NTHREADS; tries++) {
		if (tries == 100)
			zdtm_fail("thread %d (tid %d) stopped counting at %lu", i, workers[i].tid, first[i]);
		zdtm_sleep_ms(100);
		for (i = 0, moved = 0; i < NTHREADS && workers[i].count != first[i]; i++)
			moved++;
	}
	quit = 1;
	for (i = 0; i < NTHREADS; i++) {
		pthread_join(workers[i].thread, NULL);
		if (workers[i].tid_changed)
			zdtm_fail("thread %d changed tid (was %d)", i, workers[i].tid);
	}
	zdtm_pass();
}
