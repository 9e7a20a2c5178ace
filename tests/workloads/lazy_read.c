/*
 * Post-copy: read() into a buffer whose pages may still be on the source.
 * argv[2] MiB (default 64) are filled with a pattern per page; after READY
 * the process keeps writing a page of new data into its own pipe and
 * read()ing it into the buffer, from the last page down (pages the
 * background push reaches last), so the kernel faults on missing pages
 * inside the system call. At SIGTERM every page must hold what was read
 * into it, or its first pattern.
 */
#include "zdtm.h"
#include <stdint.h>
#include <sys/mman.h>

#define PAGE 4096UL

static unsigned char *region;
static unsigned long pages;

static unsigned char expect(unsigned long p, int round)
{
	return (unsigned char)(p * 7 + round * 13 + 1);
}

int main(int argc, char **argv)
{
	unsigned long mib = argc > 2 ? strtoul(argv[2], NULL, 10) : 64;
	static unsigned char src[PAGE];
	int fds[2], *rounds;
	unsigned long next;

	zdtm_init();
	pages = (mib << 20) / PAGE;
	region = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	rounds = calloc(pages, sizeof *rounds);
	if (region == MAP_FAILED || !rounds)
		zdtm_fail("mmap: %s", strerror(errno));
	if (pipe(fds))
		zdtm_fail("pipe: %s", strerror(errno));
	for (unsigned long p = 0; p < pages; p++)
		memset(region + p * PAGE, expect(p, 0), PAGE);
	zdtm_ready();
	next = pages - 1;
	while (!zdtm_stop) {
		int round = rounds[next] + 1;
		ssize_t got = 0;

		memset(src, expect(next, round), PAGE);
		if (write(fds[1], src, PAGE) != (ssize_t)PAGE)
			zdtm_fail("write to the pipe: %s", strerror(errno));
		while (got < (ssize_t)PAGE) {
			ssize_t n = read(fds[0], region + next * PAGE + got, PAGE - got);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				zdtm_fail("read into page %lu: %s", next, strerror(errno));
			got += n;
		}
		rounds[next] = round;
		next = next ? next - 1 : pages - 1;
	}
	for (unsigned long p = 0; p < pages; p++)
		for (unsigned long i = 0; i < PAGE; i++)
			if (region[p * PAGE + i] != expect(p, rounds[p]))
				zdtm_fail("page %lu byte %lu is %u, expected %u (round %d)",
					  p, i, region[p * PAGE + i], expect(p, rounds[p]), rounds[p]);
	zdtm_pass();
	return 0;
}
