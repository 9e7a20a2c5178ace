/*
 * A file made with O_TMPFILE in argv[1] (never linked: carried whole, as
 * a deleted file), holding 10 bytes, at offset 4. At SIGTERM: it still
 * has no name, its contents and offset are intact and it is still
 * writable through the same description.
 */
#include "zdtm.h"
#include <fcntl.h>
#include <sys/stat.h>

int main(int argc, char **argv)
{
	char buf[16] = { 0 };
	struct stat st;
	int fd;

	zdtm_init();
	if (argc < 2)
		zdtm_fail("usage: tmpfile DIR");
	fd = open(argv[1], O_TMPFILE | O_RDWR, 0600);
	if (fd < 0 || write(fd, "0123456789", 10) != 10 || lseek(fd, 4, SEEK_SET) != 4)
		zdtm_fail("O_TMPFILE: %s", strerror(errno));
	zdtm_ready();
	zdtm_wait_stop();

	if (fstat(fd, &st) || st.st_nlink != 0 || st.st_size != 10)
		zdtm_fail("the file has %lu links and %ld bytes", (unsigned long)st.st_nlink,
			  (long)st.st_size);
	if ((fcntl(fd, F_GETFL) & O_ACCMODE) != O_RDWR)
		zdtm_fail("the file is not open read-write");
	if (lseek(fd, 0, SEEK_CUR) != 4)
		zdtm_fail("the offset is %ld", (long)lseek(fd, 0, SEEK_CUR));
	if (write(fd, "ab", 2) != 2 || pread(fd, buf, 10, 0) != 10 || memcmp(buf, "0123ab6789", 10))
		zdtm_fail("the file holds %s", buf);
	zdtm_pass();
}
