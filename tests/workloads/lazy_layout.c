/*
 * Post-copy: an address space with every kind of page a lazy restore must
 * account for. A 64 MiB private anonymous buffer where one 64 KiB chunk in
 * eight is never touched (holes), one page is filled then explicitly
 * zeroed, 1 MiB (holes included) is made read-only with mprotect after it
 * was filled, and one filled page is made a PROT_NONE guard (its contents
 * readable only by a tracer, through /proc/PID/mem); beside it, one
 * counter in a global, one on the brk heap (sbrk) and one on the stack.
 * After READY the writable pages are rewritten one by one from the last
 * down (each with its round number), hole and read-only pages are read and
 * checked on the way, and the counters move together. At SIGTERM every
 * page must hold what was last written to it (holes and the zeroed page:
 * zeros), the read-only region and the guard page must keep their
 * protection (the guard's contents are checked after making it readable),
 * and the counters must agree.
 */
#include "zdtm.h"
#include <stdint.h>
#include <sys/mman.h>

#define PAGE 4096UL
#define PAGES (64UL << 20) / PAGE
#define CHUNK_PAGES 16UL /* 64 KiB */
#define ZEROED_PAGE 100UL
#define RO_FIRST 8192UL
#define RO_PAGES 256UL
#define GUARD_PAGE 12000UL

static unsigned char *region;
/* The round each page was last written in (0: filled before READY). */
static unsigned char rounds[PAGES];
static volatile unsigned long g_counter;

static int is_hole(unsigned long p)
{
	return (p / CHUNK_PAGES) % 8 == 3;
}

static int is_read_only(unsigned long p)
{
	return p >= RO_FIRST && p < RO_FIRST + RO_PAGES;
}

/* Pages that hold zeros whatever happens. */
static int is_zero(unsigned long p)
{
	return is_hole(p) || p == ZEROED_PAGE;
}

static int is_written(unsigned long p)
{
	return !is_zero(p) && !is_read_only(p) && p != GUARD_PAGE;
}

static unsigned char expect(unsigned long p)
{
	if (is_zero(p))
		return 0;
	return (unsigned char)(p * 7 + rounds[p] * 13 + 1) | 1;
}

static void check_page(unsigned long p)
{
	const unsigned char *at = region + p * PAGE;

	for (unsigned long i = 0; i < PAGE; i++)
		if (at[i] != expect(p))
			zdtm_fail("page %lu (%s) byte %lu is %u, expected %u (round %u)", p,
				  is_hole(p) ? "never touched" : p == ZEROED_PAGE ? "zeroed"
				  : is_read_only(p) ? "read-only" : p == GUARD_PAGE ? "guard"
				  : "written",
				  i, at[i], expect(p), rounds[p]);
}

/* The protection /proc/self/maps shows for the mapping holding `addr`. */
static void check_protection(const void *addr, const char *want)
{
	static char maps[1 << 16];
	unsigned long a = (unsigned long)addr;
	char *line;

	if (zdtm_read_file("/proc/self/maps", maps, sizeof maps) < 0)
		zdtm_fail("reading /proc/self/maps: %s", strerror(errno));
	for (line = strtok(maps, "\n"); line; line = strtok(NULL, "\n")) {
		unsigned long start, end;
		char perms[8];

		if (sscanf(line, "%lx-%lx %7s", &start, &end, perms) == 3 &&
		    start <= a && a < end) {
			if (strcmp(perms, want))
				zdtm_fail("the mapping at %#lx is %s, expected %s", a, perms, want);
			return;
		}
	}
	zdtm_fail("no mapping at %#lx any more", a);
}

int main(void)
{
	volatile unsigned long stack = 0;
	volatile unsigned long *heap;
	unsigned long next, i;

	zdtm_init();
	heap = sbrk(PAGE);
	if (heap == (void *)-1)
		zdtm_fail("sbrk: %s", strerror(errno));
	*heap = 0;
	region = mmap(NULL, PAGES * PAGE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (region == MAP_FAILED)
		zdtm_fail("mmap: %s", strerror(errno));
	for (unsigned long p = 0; p < PAGES; p++)
		if (!is_hole(p))
			memset(region + p * PAGE, p == ZEROED_PAGE ? 0xaa : expect(p), PAGE);
	memset(region + ZEROED_PAGE * PAGE, 0, PAGE);
	if (mprotect(region + RO_FIRST * PAGE, RO_PAGES * PAGE, PROT_READ))
		zdtm_fail("mprotect(PROT_READ): %s", strerror(errno));
	if (mprotect(region + GUARD_PAGE * PAGE, PAGE, PROT_NONE))
		zdtm_fail("mprotect(PROT_NONE): %s", strerror(errno));
	for (i = 0; i < 1000; i++) {
		g_counter++;
		(*heap)++;
		stack++;
	}
	zdtm_ready();

	next = PAGES - 1;
	while (!zdtm_stop) {
		if (g_counter != *heap || *heap != stack)
			zdtm_fail("counters diverged: global %lu heap %lu stack %lu",
				  g_counter, *heap, stack);
		g_counter++;
		(*heap)++;
		stack++;
		if (is_written(next)) {
			rounds[next]++;
			memset(region + next * PAGE, expect(next), PAGE);
		} else if (next != GUARD_PAGE) {
			check_page(next);
		}
		next = next ? next - 1 : PAGES - 1;
		if (next % 64 == 0)
			zdtm_sleep_ms(1);
	}

	for (unsigned long p = 0; p < PAGES; p++)
		if (p != GUARD_PAGE)
			check_page(p);
	check_protection(region + RO_FIRST * PAGE, "r--p");
	check_protection(region + GUARD_PAGE * PAGE, "---p");
	check_protection(region, "rw-p");
	if (mprotect(region + GUARD_PAGE * PAGE, PAGE, PROT_READ))
		zdtm_fail("mprotect(PROT_READ) of the guard page: %s", strerror(errno));
	check_page(GUARD_PAGE);
	if (g_counter != *heap || *heap != stack || g_counter < 1000)
		zdtm_fail("counters broken: global %lu heap %lu stack %lu",
			  g_counter, *heap, stack);
	zdtm_pass();
}
