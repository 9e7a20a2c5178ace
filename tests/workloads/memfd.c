/*
 * A memfd named "ferry-test": 3 pages of data, a one-page hole, then a
 * last page of data, mapped MAP_SHARED, sealed F_SEAL_GROW after writing,
 * offset at 100. At SIGTERM: name, size, contents (the hole reads as
 * zeros), seals and offset match, and a write through the mapping is
 * visible through the fd.
 */
#define _GNU_SOURCE
#include "zdtm.h"
#include <fcntl.h>
#include <limits.h>
#include <sys/mman.h>
#include <sys/stat.h>

#define PG 4096
#define SIZE (5 * PG)

static char expect(long off)
{
	if (off >= 3 * PG && off < 4 * PG)
		return 0;
	return (char)('a' + (off / 7) % 26);
}

int main(void)
{
	int fd;
	char *map, buf[SIZE], link[PATH_MAX], want[64];
	struct stat st;
	ssize_t n;

	zdtm_init();
	fd = memfd_create("ferry-test", MFD_ALLOW_SEALING);
	if (fd < 0)
		zdtm_fail("memfd_create: %s", strerror(errno));
	if (ftruncate(fd, SIZE))
		zdtm_fail("ftruncate: %s", strerror(errno));
	for (long i = 0; i < SIZE; i++)
		buf[i] = expect(i);
	if (pwrite(fd, buf, 3 * PG, 0) != 3 * PG || pwrite(fd, buf + 4 * PG, PG, 4 * PG) != PG)
		zdtm_fail("pwrite: %s", strerror(errno));
	map = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		zdtm_fail("mmap: %s", strerror(errno));
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_GROW))
		zdtm_fail("F_ADD_SEALS: %s", strerror(errno));
	if (lseek(fd, 100, SEEK_SET) != 100)
		zdtm_fail("lseek: %s", strerror(errno));
	zdtm_ready();
	zdtm_wait_stop();

	snprintf(want, sizeof want, "/proc/self/fd/%d", fd);
	n = readlink(want, link, sizeof link - 1);
	if (n < 0)
		zdtm_fail("readlink: %s", strerror(errno));
	link[n] = 0;
	if (strcmp(link, "/memfd:ferry-test (deleted)"))
		zdtm_fail("the memfd's link is %s", link);
	if (fstat(fd, &st) || st.st_size != SIZE)
		zdtm_fail("the memfd's size is %ld", (long)st.st_size);
	if (fcntl(fd, F_GET_SEALS) != F_SEAL_GROW)
		zdtm_fail("the seals are %#x", fcntl(fd, F_GET_SEALS));
	if (lseek(fd, 0, SEEK_CUR) != 100)
		zdtm_fail("the offset is %ld", (long)lseek(fd, 0, SEEK_CUR));
	if (pread(fd, buf, SIZE, 0) != SIZE)
		zdtm_fail("pread: %s", strerror(errno));
	for (long i = 0; i < SIZE; i++)
		if (buf[i] != expect(i) || map[i] != expect(i))
			zdtm_fail("byte %ld is %d through the fd, %d through the mapping",
				  i, buf[i], map[i]);
	map[10] = 'Z';
	if (pread(fd, buf, 1, 10) != 1 || buf[0] != 'Z')
		zdtm_fail("a write through the mapping is not seen through the fd");
	if (ftruncate(fd, 2 * SIZE) == 0 || errno != EPERM)
		zdtm_fail("F_SEAL_GROW no longer holds");
	zdtm_pass();
}
