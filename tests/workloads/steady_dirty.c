/*
 * A large memory that keeps being rewritten at a steady rate, for live
 * migration: argv[2] MiB of anonymous memory (default 1024), every page
 * filled with its version number, rewritten by a thread at argv[3] MiB/s
 * (default 64; 0 = never), page after page in a cycle, paced every
 * millisecond. A table records each page's version. At SIGTERM the writer
 * stops and every page must hold its recorded version: a checksum of all
 * of the memory, whenever the process was frozen and wherever it went.
 */
#include "zdtm.h"
#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>

#define PAGE 4096UL

static unsigned char *region;
static uint64_t *versions;
static unsigned long pages;
static double rate_pages;

static void fill(unsigned char *page, uint64_t v)
{
	memset(page, (int)(v & 0xff) | 1, PAGE);
	memcpy(page, &v, sizeof v);
}

static int page_holds(const unsigned char *page, uint64_t v)
{
	uint64_t got;

	memcpy(&got, page, sizeof got);
	if (got != v)
		return 0;
	for (unsigned long i = sizeof v; i < PAGE; i++)
		if (page[i] != ((unsigned char)(v & 0xff) | 1))
			return 0;
	return 1;
}

static void *writer(void *arg)
{
	unsigned long next = 0;
	uint64_t v = 1;
	double start = zdtm_now(), written = 0;

	(void)arg;
	while (!zdtm_stop) {
		double due = (zdtm_now() - start) * rate_pages;
		while (written < due && !zdtm_stop) {
			versions[next] = ++v;
			fill(region + next * PAGE, v);
			next = (next + 1) % pages;
			written++;
		}
		zdtm_sleep_ms(1);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	unsigned long mib = argc > 2 ? strtoul(argv[2], NULL, 10) : 1024;
	double rate = argc > 3 ? strtod(argv[3], NULL) : 64;
	pthread_t t;

	zdtm_init();
	pages = (mib << 20) / PAGE;
	rate_pages = rate * (1 << 20) / PAGE;
	region = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	versions = mmap(NULL, pages * sizeof *versions, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (region == MAP_FAILED || versions == MAP_FAILED)
		zdtm_fail("mmap: %s", strerror(errno));
	for (unsigned long p = 0; p < pages; p++) {
		versions[p] = 1;
		fill(region + p * PAGE, 1);
	}
	if (rate > 0 && pthread_create(&t, NULL, writer, NULL))
		zdtm_fail("pthread_create");
	zdtm_ready();
	zdtm_wait_stop();
	if (rate > 0)
		pthread_join(t, NULL);
	for (unsigned long p = 0; p < pages; p++)
		if (!page_holds(region + p * PAGE, versions[p]))
			zdtm_fail("page %lu does not hold version %lu", p,
				  (unsigned long)versions[p]);
	zdtm_pass();
	return 0;
}
