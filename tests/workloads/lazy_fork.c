/*
 * Post-copy: a restored process forks while its pages are still arriving.
 * argv[2] MiB (default 64) hold a pattern per page. After READY the process
 * waits for the file argv[1]/go (the test makes it once the process runs on
 * the destination: forking before would make the tree change under the
 * migration), then forks again and again; each child reads every page from the last one
 * down (pages still missing in the child are fetched for it) and exits 0
 * only if all hold their pattern; the parent rewrites one page between
 * forks. At SIGTERM every child must have passed and the parent's pages
 * must hold their patterns.
 */
#include "zdtm.h"
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define PAGE 4096UL

static unsigned char *region;
static unsigned long pages;
static unsigned char *gen;

static unsigned char expect(unsigned long p)
{
	return (unsigned char)(p * 7 + gen[p] * 13 + 1);
}

static int check(void)
{
	for (unsigned long p = pages; p-- > 0;)
		for (unsigned long i = 0; i < PAGE; i += 512)
			if (region[p * PAGE + i] != expect(p))
				return 0;
	return 1;
}

int main(int argc, char **argv)
{
	unsigned long mib = argc > 2 ? strtoul(argv[2], NULL, 10) : 64;
	unsigned long forks = 0, next = 0;
	char go[4096];

	zdtm_init();
	pages = (mib << 20) / PAGE;
	region = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	gen = calloc(pages, 1);
	if (region == MAP_FAILED || !gen)
		zdtm_fail("mmap: %s", strerror(errno));
	for (unsigned long p = 0; p < pages; p++)
		memset(region + p * PAGE, expect(p), PAGE);
	snprintf(go, sizeof go, "%s/go", argc > 1 ? argv[1] : ".");
	zdtm_ready();
	while (!zdtm_stop && access(go, F_OK))
		zdtm_sleep_ms(1);
	while (!zdtm_stop) {
		int status;
		pid_t child = fork();

		if (child < 0)
			zdtm_fail("fork: %s", strerror(errno));
		if (child == 0)
			_exit(check() ? 0 : 1);
		while (waitpid(child, &status, 0) < 0)
			if (errno != EINTR)
				zdtm_fail("waitpid: %s", strerror(errno));
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			zdtm_fail("child %lu found a page without its pattern (status %#x)",
				  forks, status);
		forks++;
		gen[next]++;
		memset(region + next * PAGE, expect(next), PAGE);
		next = (next + 97) % pages;
		zdtm_sleep_ms(5);
	}
	if (!forks)
		zdtm_fail("no fork");
	if (!check())
		zdtm_fail("the parent lost a page");
	zdtm_pass();
	return 0;
}
