/*
 * Terminals reopened by path (CRIU's zdtm console and vt): device nodes
 * of the console (5:1) and of virtual terminal 5 (4:5) made with mknod in
 * the test's directory and opened read-only. At SIGTERM both fds are
 * still open read-only on those devices.
 */
#include "zdtm.h"
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

static int open_node(const char *dir, const char *name, unsigned device[2])
{
	char path[PATH_MAX];
	int fd;

	snprintf(path, sizeof path, "%s/%s", dir, name);
	unlink(path);
	if (mknod(path, S_IFCHR | 0600, makedev(device[0], device[1])))
		zdtm_fail("mknod %s: %s", path, strerror(errno));
	fd = open(path, O_RDONLY);
	if (fd < 0)
		zdtm_fail("open %s: %s", path, strerror(errno));
	return fd;
}

static void check(int fd, const char *name, unsigned device[2])
{
	struct stat st;

	if (fstat(fd, &st))
		zdtm_fail("fstat of %s: %s", name, strerror(errno));
	if (!S_ISCHR(st.st_mode) || st.st_rdev != makedev(device[0], device[1]))
		zdtm_fail("%s is device %u:%u, expected %u:%u", name, major(st.st_rdev),
			  minor(st.st_rdev), device[0], device[1]);
	if ((fcntl(fd, F_GETFL) & O_ACCMODE) != O_RDONLY)
		zdtm_fail("%s is no longer read-only", name);
}

int main(int argc, char **argv)
{
	unsigned console[2] = { 5, 1 }, vt[2] = { 4, 5 };
	int c, v;

	zdtm_init();
	if (argc < 2)
		zdtm_fail("usage: console_vt DIR");
	mkdir(argv[1], 0755);
	c = open_node(argv[1], "console", console);
	v = open_node(argv[1], "tty5", vt);
	zdtm_ready();
	zdtm_wait_stop();
	check(c, "the console", console);
	check(v, "virtual terminal 5", vt);
	zdtm_pass();
}
