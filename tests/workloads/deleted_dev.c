/*
 * A device node deleted while open (CRIU's zdtm deleted_dev): a character
 * device 1:3 (/dev/null's), mode 0700, made with mknod in the test's
 * directory, opened twice (fd A read-write, fd B write-only O_NONBLOCK),
 * then unlinked. At SIGTERM: both fds still lead to the one node,
 * unlinked (st_nlink 0, no path left), a character device 1:3 with mode
 * 0700; their flags are intact; and the device works: a write is
 * swallowed whole, a read sees end-of-file.
 */
#include "zdtm.h"
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

static void check_stat(int fd, const char *which, const struct stat *other)
{
	struct stat st;

	if (fstat(fd, &st))
		zdtm_fail("fstat of fd %s: %s", which, strerror(errno));
	if (st.st_mode != (S_IFCHR | 0700))
		zdtm_fail("fd %s: mode %o, expected %o", which, st.st_mode, S_IFCHR | 0700);
	if (st.st_rdev != makedev(1, 3))
		zdtm_fail("fd %s: device %u:%u, expected 1:3", which, major(st.st_rdev),
			  minor(st.st_rdev));
	if (st.st_nlink != 0)
		zdtm_fail("fd %s: st_nlink %ld", which, (long)st.st_nlink);
	if (other && (st.st_ino != other->st_ino || st.st_dev != other->st_dev))
		zdtm_fail("fd %s leads to another node than fd A", which);
}

int main(int argc, char **argv)
{
	char path[PATH_MAX], buf[16];
	struct stat st;
	int a, b;

	zdtm_init();
	if (argc < 2)
		zdtm_fail("usage: deleted_dev DIR");
	mkdir(argv[1], 0755);
	snprintf(path, sizeof path, "%s/null", argv[1]);
	unlink(path);
	if (mknod(path, S_IFCHR | 0700, makedev(1, 3)))
		zdtm_fail("mknod %s: %s", path, strerror(errno));
	if (chmod(path, 0700))
		zdtm_fail("chmod %s: %s", path, strerror(errno));
	a = open(path, O_RDWR);
	b = open(path, O_WRONLY | O_NONBLOCK);
	if (a < 0 || b < 0)
		zdtm_fail("open %s: %s", path, strerror(errno));
	if (unlink(path))
		zdtm_fail("unlink %s: %s", path, strerror(errno));
	zdtm_ready();
	zdtm_wait_stop();

	check_stat(a, "A", NULL);
	fstat(a, &st);
	check_stat(b, "B", &st);
	if (access(path, F_OK) == 0 || errno != ENOENT)
		zdtm_fail("%s exists again", path);
	if ((fcntl(a, F_GETFL) & (O_ACCMODE | O_NONBLOCK)) != O_RDWR)
		zdtm_fail("fd A has flags %#x", fcntl(a, F_GETFL));
	if ((fcntl(b, F_GETFL) & (O_ACCMODE | O_NONBLOCK)) != (O_WRONLY | O_NONBLOCK))
		zdtm_fail("fd B has flags %#x", fcntl(b, F_GETFL));
	if (write(a, "hello", 5) != 5 || write(b, "hi", 2) != 2)
		zdtm_fail("write to the device: %s", strerror(errno));
	if (read(a, buf, sizeof buf) != 0)
		zdtm_fail("a read of the device did not see end-of-file");
	zdtm_pass();
}
