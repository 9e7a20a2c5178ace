/*
 * chroot: two children chroot into argv[1]/jail. A keeps its working
 * directory outside the new root (chroot does not move it), holds an fd on
 * a file outside and one on a file inside opened after the chroot (so by
 * "/inside"), and maps the inside file. B chdirs to its new root and holds
 * the outside file. At SIGTERM each checks: its fds' contents, that
 * "/inside" opens the jail's file and "/outside" does not exist (the root
 * is still the jail), its mapping, and its working directory.
 */
#include "zdtm.h"
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define INSIDE "inside-the-jail"
#define OUTSIDE "outside-the-jail"

static char jail[2048], inside[4096], outside[4096];

static void make_file(const char *path, const char *text)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);

	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		zdtm_fail("creating %s: %s", path, strerror(errno));
	close(fd);
}

static void check_fd(int fd, const char *text, const char *what)
{
	char buf[64] = { 0 };

	if (pread(fd, buf, sizeof buf - 1, 0) != (ssize_t)strlen(text) || strcmp(buf, text))
		zdtm_fail("%s reads %.63s", what, buf);
}

static ino_t inode_of(const char *path)
{
	struct stat st;

	if (stat(path, &st))
		zdtm_fail("stat %s: %s", path, strerror(errno));
	return st.st_ino;
}

/* Checks what both children hold; `in_fd` is an fd on the inside file. */
static void check_root(int in_fd, int out_fd)
{
	struct stat a, b;
	int fd;

	check_fd(out_fd, OUTSIDE, "the outside fd");
	check_fd(in_fd, INSIDE, "the inside fd");
	fd = open("/inside", O_RDONLY);
	if (fd < 0)
		zdtm_fail("open /inside: %s (the root is lost)", strerror(errno));
	if (fstat(fd, &a) || fstat(in_fd, &b) || a.st_ino != b.st_ino)
		zdtm_fail("/inside is another file");
	close(fd);
	if (access("/outside", F_OK) == 0 || errno != ENOENT)
		zdtm_fail("/outside is visible: the root is not the jail");
}

static pid_t child_a(int report, ino_t cwd_ino)
{
	pid_t pid = fork();
	int out_fd, in_fd;
	char *map;

	if (pid)
		return pid;
	out_fd = open(outside, O_RDWR);
	if (out_fd < 0 || chroot(jail))
		zdtm_fail("A: chroot %s: %s", jail, strerror(errno));
	in_fd = open("/inside", O_RDWR);
	if (in_fd < 0)
		zdtm_fail("A: open /inside: %s", strerror(errno));
	map = mmap(NULL, 4096, PROT_READ, MAP_SHARED, in_fd, 0);
	if (map == MAP_FAILED)
		zdtm_fail("A: mmap: %s", strerror(errno));
	if (write(report, "", 1) != 1)
		_exit(10);
	zdtm_wait_stop();
	check_root(in_fd, out_fd);
	if (memcmp(map, INSIDE, strlen(INSIDE)))
		zdtm_fail("A: the mapping of /inside reads %.15s", map);
	if (inode_of(".") != cwd_ino)
		zdtm_fail("A: the working directory moved");
	_exit(0);
}

static pid_t child_b(int report)
{
	pid_t pid = fork();
	int out_fd, in_fd;

	if (pid)
		return pid;
	out_fd = open(outside, O_RDONLY);
	in_fd = open(inside, O_RDONLY);
	if (out_fd < 0 || in_fd < 0 || chroot(jail) || chdir("/"))
		zdtm_fail("B: chroot %s: %s", jail, strerror(errno));
	if (write(report, "", 1) != 1)
		_exit(10);
	zdtm_wait_stop();
	check_root(in_fd, out_fd);
	if (inode_of(".") != inode_of("/"))
		zdtm_fail("B: the working directory is not the root");
	_exit(0);
}

int main(int argc, char **argv)
{
	int report[2], status;
	pid_t kids[2];
	char c;

	zdtm_init();
	if (argc < 2)
		zdtm_fail("usage: chroot DIR");
	snprintf(jail, sizeof jail, "%.2000s/jail", argv[1]);
	snprintf(inside, sizeof inside, "%s/inside", jail);
	snprintf(outside, sizeof outside, "%s/outside", argv[1]);
	if (mkdir(jail, 0755) && errno != EEXIST)
		zdtm_fail("mkdir %s: %s", jail, strerror(errno));
	make_file(inside, INSIDE);
	make_file(outside, OUTSIDE);
	if (chdir(argv[1]))
		zdtm_fail("chdir %s: %s", argv[1], strerror(errno));
	if (pipe(report))
		zdtm_fail("pipe: %s", strerror(errno));
	kids[0] = child_a(report[1], inode_of("."));
	kids[1] = child_b(report[1]);
	for (int i = 0; i < 2; i++)
		if (read(report[0], &c, 1) != 1)
			zdtm_fail("a child did not get ready");
	zdtm_ready();
	zdtm_wait_stop();
	for (int i = 0; i < 2; i++) {
		kill(kids[i], SIGTERM);
		if (waitpid(kids[i], &status, 0) != kids[i])
			zdtm_fail("waitpid: %s", strerror(errno));
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			zdtm_fail("child %c ended with status %#x", 'A' + i, status);
	}
	zdtm_pass();
}
