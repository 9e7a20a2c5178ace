/*
 * Shared memory in one process: a MAP_SHARED|MAP_ANONYMOUS region with a
 * pattern in some pages (others untouched), and a file in /dev/shm mapped
 * MAP_SHARED read-write. After restore the region holds its pattern and
 * reads zero where untouched, and the /dev/shm mapping is still shared with
 * its file: bytes written through the mapping are read back with pread.
 */
#include "zdtm.h"
#include <fcntl.h>
#include <sys/mman.h>

#define PAGES 256
#define PAGE 4096

int main(void)
{
	char path[64], buf[16];
	unsigned char *anon, *file_map;
	int fd;

	zdtm_init();
	anon = mmap(NULL, PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (anon == MAP_FAILED)
		zdtm_fail("mmap shared anonymous: %s", strerror(errno));
	for (int p = 0; p < PAGES; p += 2)
		memset(anon + p * PAGE, p + 1, PAGE);
	snprintf(path, sizeof path, "/dev/shm/ferry-zdtm-shm-%d", getpid());
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, 4 * PAGE))
		zdtm_fail("%s: %s", path, strerror(errno));
	file_map = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (file_map == MAP_FAILED)
		zdtm_fail("mmap %s: %s", path, strerror(errno));
	close(fd);
	memcpy(file_map + PAGE, "before", 6);
	zdtm_ready();
	zdtm_wait_stop();

	for (int p = 0; p < PAGES; p++)
		for (int i = 0; i < PAGE; i += 512)
			if (anon[p * PAGE + i] != (p % 2 ? 0 : p + 1))
				zdtm_fail("shared anonymous page %d holds %d", p, anon[p * PAGE + i]);
	if (memcmp(file_map + PAGE, "before", 6))
		zdtm_fail("the /dev/shm mapping lost its contents");
	memcpy(file_map + 2 * PAGE, "after!", 6);
	fd = open(path, O_RDONLY);
	if (fd < 0 || pread(fd, buf, 6, 2 * PAGE) != 6 || memcmp(buf, "after!", 6))
		zdtm_fail("the /dev/shm mapping is no longer shared with its file");
	close(fd);
	unlink(path);
	zdtm_pass();
}
