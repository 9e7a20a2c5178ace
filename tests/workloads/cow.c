/*
 * Private anonymous memory a parent, its child and its grandchild share
 * copy-on-write since fork (CRIU's cow00/cow01). The parent fills 20 pages
 * and forks the child; the child rewrites pages 8-11, drops pages 16-19
 * (MADV_DONTNEED) and forks the grandchild; then the parent rewrites pages
 * 12-15. At SIGTERM the parent checks through /proc/PID/pagemap that what
 * they still shared is still one physical page (pages 0-7 in all three,
 * 8-15 in the child and the grandchild) and its own contents; the child
 * and the grandchild check theirs and exit with the result. The same for a
 * private mapping of a file made in argv[1]: the parent writes its pages
 * 0-3 before the fork (copies of its own), the child rewrites page 2; pages
 * 0, 1 and 3 stay shared, pages 4-7 show the file (read before the fork, they
 * are the file's pages: not copies, and not restored as present).
 */
#include "zdtm.h"
#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define PAGES 20
#define PAGE 4096
#define FILE_PAGES 8

static unsigned char *mem, *file_map;

/* The byte page `page` of the file mapping holds for `who`. */
static int file_expected(int page, char who)
{
	if (page == 2 && who != 'p')
		return 'C';
	return page < 4 ? 'P' : 'F';
}

/* The byte page `page` holds for the parent ('p') or for the child and
 * the grandchild (anything else). */
static int expected(int page, char who)
{
	if (page < 8)
		return page + 1;
	if (page < 12)
		return who == 'p' ? page + 1 : 0x80 + page;
	if (page < 16)
		return who == 'p' ? 0x40 + page : page + 1;
	return who == 'p' ? page + 1 : 0;
}

/* Fails unless every byte of every page is what `who` should see. */
static void check_contents(char who)
{
	for (int p = 0; p < PAGES; p++)
		for (int i = 0; i < PAGE; i++)
			if (mem[p * PAGE + i] != expected(p, who))
				zdtm_fail("%c: byte %d of page %d is %d, not %d", who, i, p,
					  mem[p * PAGE + i], expected(p, who));
	for (int p = 0; p < FILE_PAGES; p++)
		for (int i = 0; i < PAGE; i++)
			if (file_map[p * PAGE + i] != file_expected(p, who))
				zdtm_fail("%c: byte %d of file page %d is %d, not %d", who, i, p,
					  file_map[p * PAGE + i], file_expected(p, who));
}

/* The pagemap entry of page `page` (of `base`) of process `pid`. */
static uint64_t entry(pid_t pid, unsigned char *base, int page)
{
	char path[64];
	uint64_t e;
	int fd;

	snprintf(path, sizeof path, "/proc/%d/pagemap", pid);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		zdtm_fail("open %s: %s", path, strerror(errno));
	if (pread(fd, &e, sizeof e, ((uintptr_t)base / PAGE + page) * sizeof e) != sizeof e)
		zdtm_fail("pread %s: %s", path, strerror(errno));
	close(fd);
	return e;
}

/* Fails unless pages [from, to) of `base` in a and b are the same physical
 * pages. */
static void check_shared(pid_t a, pid_t b, unsigned char *base, int from, int to)
{
	const uint64_t pfn = (1ULL << 55) - 1, present = 1ULL << 63;

	for (int p = from; p < to; p++) {
		uint64_t ea = entry(a, base, p), eb = entry(b, base, p);

		if (!(ea & present) || !(ea & pfn))
			zdtm_fail("page %d of %d is not present or shows no frame (%llx)", p, a,
				  (unsigned long long)ea);
		if ((ea & pfn) != (eb & pfn))
			zdtm_fail("page %d is not shared by %d and %d (frames %llx, %llx)", p, a, b,
				  (unsigned long long)(ea & pfn), (unsigned long long)(eb & pfn));
	}
}

/* Waits for SIGTERM, checks `who`'s contents, exits with the result. */
static void descendant(char who, pid_t child)
{
	int status;

	zdtm_wait_stop();
	if (child > 0) {
		kill(child, SIGTERM);
		if (waitpid(child, &status, 0) != child)
			zdtm_fail("waitpid: %s", strerror(errno));
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			_exit(1);
	}
	check_contents(who);
	_exit(0);
}

int main(int argc, char **argv)
{
	pid_t child, grandchild = 0;
	int sync[2], status, fd;
	unsigned char *area;
	char path[4096], page[PAGE];

	if (argc < 2)
		zdtm_fail("usage: cow DIR");
	zdtm_init();
	snprintf(path, sizeof path, "%s/cow_file", argv[1]);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		zdtm_fail("open %s: %s", path, strerror(errno));
	memset(page, 'F', PAGE);
	for (int p = 0; p < FILE_PAGES; p++)
		if (write(fd, page, PAGE) != PAGE)
			zdtm_fail("write: %s", strerror(errno));
	file_map = mmap(NULL, FILE_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	if (file_map == MAP_FAILED)
		zdtm_fail("mmap %s: %s", path, strerror(errno));
	close(fd);
	memset(file_map, 'P', 4 * PAGE);
	for (int p = 4; p < FILE_PAGES; p++) /* read: the file's pages are mapped */
		if (file_map[p * PAGE] != 'F')
			zdtm_fail("file page %d does not show the file", p);
	/* Guard pages on both sides keep the mapping from merging with another. */
	area = mmap(NULL, (PAGES + 2) * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED)
		zdtm_fail("mmap: %s", strerror(errno));
	mem = area + PAGE;
	if (mprotect(mem, PAGES * PAGE, PROT_READ | PROT_WRITE))
		zdtm_fail("mprotect: %s", strerror(errno));
	for (int p = 0; p < PAGES; p++)
		memset(mem + p * PAGE, p + 1, PAGE);
	if (pipe(sync))
		zdtm_fail("pipe: %s", strerror(errno));
	child = fork();
	if (child < 0)
		zdtm_fail("fork: %s", strerror(errno));
	if (child == 0) {
		for (int p = 8; p < 12; p++)
			memset(mem + p * PAGE, 0x80 + p, PAGE);
		memset(file_map + 2 * PAGE, 'C', PAGE);
		if (madvise(mem + 16 * PAGE, 4 * PAGE, MADV_DONTNEED))
			zdtm_fail("madvise: %s", strerror(errno));
		grandchild = fork();
		if (grandchild < 0)
			zdtm_fail("fork: %s", strerror(errno));
		if (grandchild == 0)
			descendant('g', 0);
		if (write(sync[1], &grandchild, sizeof grandchild) != sizeof grandchild)
			zdtm_fail("write: %s", strerror(errno));
		descendant('c', grandchild);
	}
	if (read(sync[0], &grandchild, sizeof grandchild) != sizeof grandchild)
		zdtm_fail("read: %s", strerror(errno));
	for (int p = 12; p < 16; p++)
		memset(mem + p * PAGE, 0x40 + p, PAGE);
	zdtm_ready();
	zdtm_wait_stop();
	check_shared(getpid(), child, mem, 0, 8);
	check_shared(getpid(), grandchild, mem, 0, 8);
	check_shared(child, grandchild, mem, 8, 16);
	check_shared(getpid(), child, file_map, 0, 2);
	check_shared(getpid(), child, file_map, 3, 4);
	check_contents('p');
	kill(child, SIGTERM);
	if (waitpid(child, &status, 0) != child)
		zdtm_fail("waitpid: %s", strerror(errno));
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		zdtm_fail("the child or the grandchild found its memory changed (status %#x)",
			  status);
	zdtm_pass();
}
