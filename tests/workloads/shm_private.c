/*
 * A private mapping of a shared anonymous object (CRIU's shmemfd-priv):
 * MAP_SHARED anonymous memory of 4 pages is opened through
 * /proc/self/map_files and mapped again MAP_PRIVATE from its second page;
 * the private mapping's first page is written (a copy of its own). At
 * SIGTERM the copy holds what was written, the pages not written show the
 * object's, and a write to the shared mapping shows through the private one
 * (it maps the same object, not a copy).
 */
#include "zdtm.h"
#include <fcntl.h>
#include <sys/mman.h>

#define PAGE 4096

int main(void)
{
	volatile int *shared, *priv;
	char path[128];
	int fd;

	zdtm_init();
	shared = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shared == MAP_FAILED)
		zdtm_fail("mmap: %s", strerror(errno));
	for (int p = 0; p < 4; p++)
		shared[p * PAGE / 4] = 10 + p;
	snprintf(path, sizeof path, "/proc/self/map_files/%lx-%lx", (unsigned long)shared,
		 (unsigned long)shared + 4 * PAGE);
	fd = open(path, O_RDWR);
	if (fd < 0)
		zdtm_fail("open %s: %s", path, strerror(errno));
	priv = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, PAGE);
	if (priv == MAP_FAILED)
		zdtm_fail("mmap of %s: %s", path, strerror(errno));
	close(fd);
	priv[0] = 99;
	zdtm_ready();
	zdtm_wait_stop();
	if (priv[0] != 99)
		zdtm_fail("the private copy holds %d, not 99", priv[0]);
	if (shared[PAGE / 4] != 11)
		zdtm_fail("the object's page 1 holds %d, not 11: the copy leaked", shared[PAGE / 4]);
	if (priv[PAGE / 4] != 12)
		zdtm_fail("the private mapping's page 1 shows %d, not the object's 12", priv[PAGE / 4]);
	shared[3 * PAGE / 4] = 444;
	if (priv[2 * PAGE / 4] != 444)
		zdtm_fail("a write to the object does not show through the private mapping (%d)",
			  priv[2 * PAGE / 4]);
	zdtm_pass();
}
