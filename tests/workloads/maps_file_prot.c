/*
 * Two pages of a file under argv[1], opened read-write and mapped
 * MAP_SHARED read-only, the second page then made writable (two mappings
 * of one file, one read-only) and the fd closed. At SIGTERM: the second
 * page is still writable and its write reaches the file, and the first
 * page can be made writable again, as a mapping from a read-write open
 * can (one from a read-only open could not).
 */
#include "zdtm.h"
#include <fcntl.h>
#include <sys/mman.h>

int main(int argc, char **argv)
{
	char path[4096], c;
	long page = sysconf(_SC_PAGESIZE);
	char *ro, *rw;
	int fd;

	zdtm_init();
	if (argc < 2)
		zdtm_fail("usage: maps_file_prot DIR");
	snprintf(path, sizeof path, "%s/mapped", argv[1]);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || ftruncate(fd, 2 * page))
		zdtm_fail("%s: %s", path, strerror(errno));
	ro = mmap(NULL, 2 * page, PROT_READ, MAP_SHARED, fd, 0);
	if (ro == MAP_FAILED)
		zdtm_fail("mmap: %s", strerror(errno));
	rw = ro + page;
	if (mprotect(rw, page, PROT_READ | PROT_WRITE))
		zdtm_fail("mprotect: %s", strerror(errno));
	close(fd);
	zdtm_ready();
	zdtm_wait_stop();

	rw[0] = 'w';
	if (mprotect(ro, page, PROT_READ | PROT_WRITE))
		zdtm_fail("mprotect of the read-only page after restore: %s", strerror(errno));
	ro[0] = 'r';
	if (msync(ro, 2 * page, MS_SYNC))
		zdtm_fail("msync: %s", strerror(errno));
	fd = open(path, O_RDONLY);
	if (fd < 0 || pread(fd, &c, 1, 0) != 1 || c != 'r' || pread(fd, &c, 1, page) != 1 ||
	    c != 'w')
		zdtm_fail("the writes did not reach the file");
	zdtm_pass();
}
