/*
 * Memory protections: a read-only region with a pattern, two read-write pages
 * around a PROT_NONE guard page, and a region written and then made PROT_NONE.
 * At SIGTERM /proc/self/maps must show the same protections, and the contents
 * (the hidden region after mprotect'ing it readable again) must be intact.
 */
#include "zdtm.h"
#include <stdint.h>
#include <sys/mman.h>

static long page;

static unsigned char pattern(int region, long i)
{
	return (unsigned char)(region * 31 + i * 7 + (i >> 12) + 1);
}

static char *map_rw(long pages)
{
	char *p = mmap(NULL, pages * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		zdtm_fail("mmap: %s", strerror(errno));
	return p;
}

static void fill(char *p, long len, int region)
{
	for (long i = 0; i < len; i++)
		p[i] = (char)pattern(region, i);
}

static void check(const char *p, long from, long len, int region, const char *what)
{
	for (long i = from; i < len; i++)
		if ((unsigned char)p[i] != pattern(region, i))
			zdtm_fail("%s: byte %ld changed", what, i);
}

/* Checks the permissions /proc/self/maps gives for the mapping holding addr. */
static void check_perms(const void *addr, const char *want, const char *what)
{
	FILE *f = fopen("/proc/self/maps", "r");
	uintptr_t a = (uintptr_t)addr;
	unsigned long start, end;
	char line[512], perms[8];

	if (!f)
		zdtm_fail("open /proc/self/maps");
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx %4s", &start, &end, perms) != 3)
			continue;
		if (a >= start && a < end) {
			fclose(f);
			if (strcmp(perms, want))
				zdtm_fail("%s is %s, expected %s", what, perms, want);
			return;
		}
	}
	zdtm_fail("%s (%p) is not mapped", what, addr);
}

int main(void)
{
	char *ro, *rw, *hidden;
	volatile unsigned long *lo, *hi;
	unsigned long sum = 0;

	page = sysconf(_SC_PAGESIZE);
	zdtm_init();
	ro = map_rw(4);
	fill(ro, 4 * page, 1);
	rw = map_rw(3);
	fill(rw, 3 * page, 2);
	hidden = map_rw(2);
	fill(hidden, 2 * page, 3);
	if (mprotect(ro, 4 * page, PROT_READ) || mprotect(rw + page, page, PROT_NONE) ||
	    mprotect(hidden, 2 * page, PROT_NONE))
		zdtm_fail("mprotect: %s", strerror(errno));
	/* The first word of each read-write page is a counter. */
	lo = (volatile unsigned long *)rw;
	hi = (volatile unsigned long *)(rw + 2 * page);
	*lo = *hi = 0;
	zdtm_ready();

	while (!zdtm_stop) {
		(*lo)++;
		(*hi)++;
		sum += (unsigned char)ro[(*lo * 4093) % (4 * page)];
		if (*lo % 100000 == 0)
			zdtm_sleep_ms(1);
	}

	check_perms(ro, "r--p", "read-only region");
	check_perms(ro + 3 * page, "r--p", "read-only region end");
	check_perms(rw, "rw-p", "page below the guard");
	check_perms(rw + page, "---p", "guard page");
	check_perms(rw + 2 * page, "rw-p", "page above the guard");
	check_perms(hidden, "---p", "PROT_NONE region");
	check(ro, 0, 4 * page, 1, "read-only region");
	if (*lo != *hi || *lo == 0)
		zdtm_fail("counters around the guard: %lu and %lu", *lo, *hi);
	check(rw, sizeof(long), page, 2, "page below the guard");
	check(rw, 2 * page + sizeof(long), 3 * page, 2, "page above the guard");
	if (mprotect(hidden, 2 * page, PROT_READ) || mprotect(rw + page, page, PROT_READ))
		zdtm_fail("mprotect readable: %s", strerror(errno));
	check(hidden, 0, 2 * page, 3, "PROT_NONE region");
	check(rw, page, 2 * page, 2, "guard page");
	if (sum == 0)
		zdtm_fail("read nothing from the read-only region");
	zdtm_pass();
}
