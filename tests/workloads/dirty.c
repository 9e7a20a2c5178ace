/*
 * Memory that keeps changing while it is checkpointed (what pre-copy must
 * get right): a writer thread rewrites random pages of a 64 MiB region
 * without pause, each page filled with its version number, which a table
 * records; it also discards pages with madvise(MADV_DONTNEED) (they read as
 * zero afterwards) and unmaps and maps again a second region with new
 * contents. Whatever moment the process is frozen at, every page must
 * match the table after restore (except the one page being written at that
 * moment; the writer finishes that page after restore).
 */
#include "zdtm.h"
#include <pthread.h>
#include <sys/mman.h>

#define PAGES 16384UL
#define PAGE 4096UL
#define REMAP_PAGES 256UL

static unsigned char *region;
static unsigned long versions[PAGES];
static unsigned char *remapped;
static volatile unsigned long remap_generation;
static volatile unsigned long rounds;

static void fill(unsigned char *page, unsigned long v)
{
	memset(page, (int)(v & 0xff), PAGE);
	memcpy(page, &v, sizeof v);
}

static int page_holds(const unsigned char *page, unsigned long v)
{
	unsigned long got;
	memcpy(&got, page, sizeof got);
	if (got != v)
		return 0;
	for (unsigned long i = sizeof v; i < PAGE; i++)
		if (page[i] != (unsigned char)(v & 0xff))
			return 0;
	return 1;
}

static void *writer(void *arg)
{
	unsigned long seed = 12345, v = 0;
	(void)arg;
	while (!zdtm_stop) {
		seed = seed * 6364136223846793005UL + 1442695040888963407UL;
		unsigned long i = (seed >> 33) % PAGES;
		if ((seed & 0xf) == 0) {
			madvise(region + i * PAGE, PAGE, MADV_DONTNEED);
			versions[i] = 0;
		} else {
			versions[i] = ++v;
			fill(region + i * PAGE, v);
		}
		if ((seed & 0xfff) == 1) {
			munmap(remapped, REMAP_PAGES * PAGE);
			remapped = mmap(NULL, REMAP_PAGES * PAGE, PROT_READ | PROT_WRITE,
					MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (remapped == MAP_FAILED)
				zdtm_fail("mmap: %s", strerror(errno));
			remap_generation++;
			for (unsigned long p = 0; p < REMAP_PAGES; p++)
				fill(remapped + p * PAGE, remap_generation);
		}
		rounds++;
	}
	return NULL;
}

static void verify(void)
{
	for (unsigned long i = 0; i < PAGES; i++) {
		if (!page_holds(region + i * PAGE, versions[i]))
			zdtm_fail("page %lu does not hold version %lu", i, versions[i]);
	}
	for (unsigned long p = 0; p < REMAP_PAGES; p++)
			if (!page_holds(remapped + p * PAGE, remap_generation))
				zdtm_fail("remapped page %lu does not hold generation %lu", p,
					  remap_generation);
}

int main(void)
{
	pthread_t t;

	zdtm_init();
	region = mmap(NULL, PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	remapped = mmap(NULL, REMAP_PAGES * PAGE, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (region == MAP_FAILED || remapped == MAP_FAILED)
		zdtm_fail("mmap: %s", strerror(errno));
	for (unsigned long p = 0; p < REMAP_PAGES; p++)
		fill(remapped + p * PAGE, 0);
	if (pthread_create(&t, NULL, writer, NULL))
		zdtm_fail("pthread_create");
	while (rounds < 100000)
		zdtm_sleep_ms(1);
	zdtm_ready();
	zdtm_wait_stop();
	/* The writer finishes its current page and stops at SIGTERM; every
	 * page must then match the table. */
	pthread_join(t, NULL);
	verify();
	zdtm_pass();
	return 0;
}
