/*
 * Memory of all kinds survives: one counter in a global, one on the heap and
 * one on the stack are incremented together and must stay equal (checked at
 * the start of every iteration) and keep advancing after the restore.
 */
#include "zdtm.h"

static volatile unsigned long g_counter;

int main(void)
{
	volatile unsigned long *heap = calloc(1, sizeof(*heap));
	volatile unsigned long stack = 0;
	unsigned long at_ready, at_stop, i;

	if (!heap)
		zdtm_fail("calloc");
	zdtm_init();
	for (i = 0; i < 1000; i++) {
		g_counter++;
		(*heap)++;
		stack++;
	}
	at_ready = g_counter;
	zdtm_ready();

	while (!zdtm_stop) {
		if (g_counter != *heap || *heap != stack)
			zdtm_fail("counters diverged: global %lu heap %lu stack %lu",
				  g_counter, *heap, stack);
		g_counter++;
		(*heap)++;
		stack++;
	}

	at_stop = g_counter;
	if (at_stop <= at_ready)
		zdtm_fail("counter did not advance: %lu at READY, %lu at SIGTERM", at_ready, at_stop);
	/* Still counting now, after the restore. */
	for (i = 0; i < 1000; i++) {
		g_counter++;
		(*heap)++;
		stack++;
	}
	if (g_counter != at_stop + 1000 || *heap != g_counter || stack != g_counter)
		zdtm_fail("counters broken after SIGTERM: global %lu heap %lu stack %lu (expected %lu)",
			  g_counter, *heap, stack, at_stop + 1000);
	zdtm_pass();
}
