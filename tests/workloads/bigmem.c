/*
 * Lots of memory: 512 MiB of anonymous memory where, in every group of 64
 * pages, page 1 is never touched, page 2 is written and then zeroed, and the
 * other pages hold a pattern. The checksum taken at setup and the pattern
 * itself must match at SIGTERM; untouched and zeroed pages must read zero.
 */
#include "zdtm.h"
#include <stdint.h>
#include <sys/mman.h>

#define SIZE (512UL << 20)
#define PAGE 4096UL
#define WORDS (PAGE / 8)

static uint64_t word(uint64_t i)
{
	uint64_t z = i + 0x9e3779b97f4a7c15ULL;	/* splitmix64 */

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return (z ^ (z >> 31)) | 1;
}

static int kind(uint64_t page)
{
	return page % 64 == 1 ? 'u' : page % 64 == 2 ? 'z' : 'p';
}

/*
 * Checksums the touched pages; with verify, also fails at the first unexpected
 * word, and reads the untouched pages (only then) to check they are zero.
 */
static uint64_t checksum(const volatile uint64_t *mem, int verify)
{
	uint64_t sum = 0xcbf29ce484222325ULL, p, j, want;

	for (p = 0; p < SIZE / PAGE; p++) {
		if (kind(p) == 'u' && !verify)
			continue;
		for (j = 0; j < WORDS; j++) {
			uint64_t w = mem[p * WORDS + j];

			want = kind(p) == 'p' ? word(p * WORDS + j) : 0;
			if (verify && w != want)
				zdtm_fail("page %lu (%c) word %lu is %#lx, expected %#lx",
					  p, kind(p), j, w, want);
			if (kind(p) != 'u')
				sum = (sum ^ w) * 0x100000001b3ULL;
		}
	}
	return sum;
}

int main(void)
{
	volatile uint64_t *mem;
	uint64_t setup_sum, p, j;

	zdtm_init();
	mem = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		zdtm_fail("mmap: %s", strerror(errno));
	for (p = 0; p < SIZE / PAGE; p++) {
		if (kind(p) == 'u')
			continue;
		for (j = 0; j < WORDS; j++)
			mem[p * WORDS + j] = word(p * WORDS + j);
		if (kind(p) == 'z')
			memset((void *)(mem + p * WORDS), 0, PAGE);
	}
	setup_sum = checksum(mem, 0);
	zdtm_ready();

	zdtm_wait_stop();

	if (checksum(mem, 1) != setup_sum)
		zdtm_fail("checksum changed");
	zdtm_pass();
}
