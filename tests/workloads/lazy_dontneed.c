/*
 * Post-copy: memory discarded with madvise(MADV_DONTNEED) while its pages
 * are still on the source must read as zero afterwards, never as the old
 * contents pushed late. argv[2] MiB (default 64) hold a pattern per page;
 * after READY pages are discarded from the last one down, checked to read
 * zero, and every other one refilled. At SIGTERM each page must be zero or
 * hold its pattern as recorded.
 */
#include "zdtm.h"
#include <stdint.h>
#include <sys/mman.h>

#define PAGE 4096UL

static unsigned char *region;
static unsigned long pages;

static unsigned char pattern(unsigned long p)
{
	return (unsigned char)(p * 7 + 1) | 1;
}

int main(int argc, char **argv)
{
	unsigned long mib = argc > 2 ? strtoul(argv[2], NULL, 10) : 64;
	unsigned char *state;
	unsigned long next, done = 0;

	zdtm_init();
	pages = (mib << 20) / PAGE;
	region = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	state = calloc(pages, 1);
	if (region == MAP_FAILED || !state)
		zdtm_fail("mmap: %s", strerror(errno));
	for (unsigned long p = 0; p < pages; p++) {
		memset(region + p * PAGE, pattern(p), PAGE);
		state[p] = 1;
	}
	zdtm_ready();
	next = pages - 1;
	while (!zdtm_stop && done < pages) {
		unsigned char *page = region + next * PAGE;

		if (madvise(page, PAGE, MADV_DONTNEED))
			zdtm_fail("madvise: %s", strerror(errno));
		for (unsigned long i = 0; i < PAGE; i++)
			if (page[i])
				zdtm_fail("page %lu byte %lu is %u after MADV_DONTNEED", next, i, page[i]);
		state[next] = 0;
		if (next % 2) {
			memset(page, pattern(next), PAGE);
			state[next] = 1;
		}
		done++;
		next = next ? next - 1 : pages - 1;
		if (done % 256 == 0)
			zdtm_sleep_ms(1);
	}
	zdtm_wait_stop();
	for (unsigned long p = 0; p < pages; p++)
		for (unsigned long i = 0; i < PAGE; i++)
			if (region[p * PAGE + i] != (state[p] ? pattern(p) : 0))
				zdtm_fail("page %lu byte %lu is %u, expected %u", p, i,
					  region[p * PAGE + i], state[p] ? pattern(p) : 0);
	zdtm_pass();
	return 0;
}
