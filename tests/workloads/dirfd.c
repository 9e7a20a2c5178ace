/*
 * Directory fds: argv[1]/d holds 40 files; fd 10 is a plain O_RDONLY
 * open of it, fd 11 the same with O_CLOEXEC, fd 12 an O_NONBLOCK one
 * advanced by one small getdents64 (its offset is not 0), fd 13 an O_PATH
 * one, fd 14 the working directory (argv[1]) held as an fd, and fd 15 one
 * advanced by getdents64 and shared with a child through fork. At SIGTERM
 * every fd must still be the same directory (fstat against stat of its
 * path), with the same FD_CLOEXEC and status flags, fd 12 at the same
 * offset and reading on from there the entries a fresh open positioned
 * there reads, openat relative to each working; then the child, woken by
 * SIGUSR1, reads on through fd 15 and reports the offset it reached,
 * which the parent must see on its own fd 15: the description is shared.
 * Fd 16, an O_PATH open of a regular file in d (no position to restore),
 * must come back as that file with its flags.
 */
#include "zdtm.h"
#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define FIRST 10
#define PLAIN 10
#define CLOEXEC 11
#define ADVANCED 12
#define OPATH 13
#define CWD 14
#define SHARED 15
#define LAST 15
#define FILE_OPATH 16
#define FILES 40
/* Room for a few entries only, so one call leaves the rest unread. */
#define SMALL 128

static volatile sig_atomic_t wake;

static void on_usr1(int sig)
{
	(void)sig;
	wake = 1;
}

static long getdents(int fd, char *buf, size_t len)
{
	return syscall(SYS_getdents64, fd, buf, len);
}

/* Reads every entry left from fd's offset on, as "name\n" lines into out. */
static void rest_of(int fd, char *out, size_t size)
{
	char buf[4096];
	size_t used = 0;
	long n;

	out[0] = '\0';
	while ((n = getdents(fd, buf, sizeof buf)) > 0) {
		for (long at = 0; at < n;) {
			struct {
				uint64_t ino;
				int64_t off;
				unsigned short reclen;
				unsigned char type;
				char name[];
			} *d = (void *)(buf + at);
			int w = snprintf(out + used, size - used, "%s\n", d->name);

			if (w < 0 || (size_t)w >= size - used)
				zdtm_fail("too many entries");
			used += (size_t)w;
			at += d->reclen;
		}
	}
	if (n < 0)
		zdtm_fail("getdents64 of fd %d: %s", fd, strerror(errno));
}

static void dup_to(int fd, int want, const char *what)
{
	if (fd < 0 || dup3(fd, want, (fcntl(fd, F_GETFD) & FD_CLOEXEC) ? O_CLOEXEC : 0) != want)
		zdtm_fail("%s: %s", what, strerror(errno));
	close(fd);
}

static void same_dir(int fd, const char *path)
{
	struct stat a, b;

	if (fstat(fd, &a) || stat(path, &b))
		zdtm_fail("fstat of fd %d or stat of %s: %s", fd, path, strerror(errno));
	if (!S_ISDIR(a.st_mode) || a.st_ino != b.st_ino || a.st_dev != b.st_dev)
		zdtm_fail("fd %d is inode %llu, not directory %s (inode %llu)", fd,
			  (unsigned long long)a.st_ino, path, (unsigned long long)b.st_ino);
}

int main(int argc, char **argv)
{
	static char expected[8192], got[8192];
	char dir[4096], path[4200], file[4300], buf[SMALL];
	int getfd[FILE_OPATH + 1], getfl[FILE_OPATH + 1], report[2], status, fd;
	struct stat st, file_st;
	off_t advanced, shared_before, child_off;
	pid_t pid;

	zdtm_init();
	if (argc < 2)
		zdtm_fail("usage: dirfd DIR");
	if (chdir(argv[1]) || !getcwd(dir, sizeof dir))
		zdtm_fail("chdir %s: %s", argv[1], strerror(errno));
	snprintf(path, sizeof path, "%s/d", dir);
	if (mkdir(path, 0755) && errno != EEXIST)
		zdtm_fail("mkdir %s: %s", path, strerror(errno));
	for (int i = 0; i < FILES; i++) {
		char name[4300];

		snprintf(name, sizeof name, "%s/f%02d", path, i);
		fd = open(name, O_WRONLY | O_CREAT, 0644);
		if (fd < 0)
			zdtm_fail("creating %s: %s", name, strerror(errno));
		close(fd);
	}
	dup_to(open(path, O_RDONLY | O_DIRECTORY), PLAIN, "plain open");
	dup_to(open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC), CLOEXEC, "O_CLOEXEC open");
	dup_to(open(path, O_RDONLY | O_DIRECTORY | O_NONBLOCK), ADVANCED, "O_NONBLOCK open");
	dup_to(open(path, O_PATH | O_DIRECTORY), OPATH, "O_PATH open");
	dup_to(open(".", O_RDONLY | O_DIRECTORY), CWD, "open of the working directory");
	dup_to(open(path, O_RDONLY | O_DIRECTORY), SHARED, "shared open");
	snprintf(file, sizeof file, "%s/f00", path);
	dup_to(open(file, O_PATH), FILE_OPATH, "O_PATH open of a file");
	if (getdents(ADVANCED, buf, sizeof buf) <= 0 || getdents(SHARED, buf, sizeof buf) <= 0)
		zdtm_fail("getdents64: %s", strerror(errno));
	advanced = lseek(ADVANCED, 0, SEEK_CUR);
	shared_before = lseek(SHARED, 0, SEEK_CUR);
	if (advanced <= 0 || shared_before <= 0)
		zdtm_fail("getdents64 left the offsets at %lld and %lld", (long long)advanced,
			  (long long)shared_before);
	/* What reading on from that offset gives, seen through another open. */
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || lseek(fd, advanced, SEEK_SET) != advanced)
		zdtm_fail("seeking a fresh open to %lld: %s", (long long)advanced, strerror(errno));
	rest_of(fd, expected, sizeof expected);
	close(fd);
	if (!expected[0])
		zdtm_fail("nothing is left to read after the first getdents64");
	for (int i = FIRST; i <= FILE_OPATH; i++) {
		getfd[i] = fcntl(i, F_GETFD);
		getfl[i] = fcntl(i, F_GETFL);
	}
	if (!(getfd[CLOEXEC] & FD_CLOEXEC) || (getfd[PLAIN] & FD_CLOEXEC) || !(getfl[OPATH] & O_PATH))
		zdtm_fail("the flags are not what was asked for");
	if (pipe(report))
		zdtm_fail("pipe: %s", strerror(errno));
	pid = fork();
	if (pid < 0)
		zdtm_fail("fork: %s", strerror(errno));
	if (pid == 0) {
		signal(SIGTERM, SIG_DFL);
		signal(SIGUSR1, on_usr1);
		while (!wake)
			zdtm_sleep_ms(10);
		if (getdents(SHARED, buf, sizeof buf) <= 0)
			_exit(1);
		child_off = lseek(SHARED, 0, SEEK_CUR);
		if (write(report[1], &child_off, sizeof child_off) != sizeof child_off)
			_exit(2);
		_exit(0);
	}
	zdtm_ready();
	zdtm_wait_stop();

	for (int i = FIRST; i <= LAST; i++) {
		same_dir(i, i == CWD ? "." : path);
		if (fcntl(i, F_GETFD) != getfd[i] || fcntl(i, F_GETFL) != getfl[i])
			zdtm_fail("fd %d has FD flags %#x and status flags %#o, not %#x and %#o", i,
				  fcntl(i, F_GETFD), fcntl(i, F_GETFL), getfd[i], getfl[i]);
	}
	same_dir(CWD, dir);
	if (fstat(FILE_OPATH, &st) || stat(file, &file_st) || !S_ISREG(st.st_mode) ||
	    st.st_ino != file_st.st_ino || fcntl(FILE_OPATH, F_GETFL) != getfl[FILE_OPATH] ||
	    fcntl(FILE_OPATH, F_GETFD) != getfd[FILE_OPATH])
		zdtm_fail("fd %d is no longer an O_PATH open of %s", FILE_OPATH, file);
	if (lseek(ADVANCED, 0, SEEK_CUR) != advanced)
		zdtm_fail("fd %d is at offset %lld, not %lld", ADVANCED,
			  (long long)lseek(ADVANCED, 0, SEEK_CUR), (long long)advanced);
	rest_of(ADVANCED, got, sizeof got);
	if (strcmp(got, expected))
		zdtm_fail("fd %d reads on with\n%s\nnot\n%s", ADVANCED, got, expected);
	for (int i = FIRST; i <= LAST; i++) {
		const char *name = i == CWD ? "d/f07" : "f07";

		fd = openat(i, name, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			zdtm_fail("openat(%d, %s): %s", i, name, strerror(errno));
		close(fd);
	}
	if (lseek(SHARED, 0, SEEK_CUR) != shared_before)
		zdtm_fail("fd %d is at offset %lld, not %lld", SHARED,
			  (long long)lseek(SHARED, 0, SEEK_CUR), (long long)shared_before);
	kill(pid, SIGUSR1);
	if (read(report[0], &child_off, sizeof child_off) != sizeof child_off)
		zdtm_fail("the child did not report");
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
		zdtm_fail("the child ended with status %#x", status);
	if (child_off == shared_before || lseek(SHARED, 0, SEEK_CUR) != child_off)
		zdtm_fail("the child read fd %d on to %lld, the parent sees %lld (was %lld)", SHARED,
			  (long long)child_off, (long long)lseek(SHARED, 0, SEEK_CUR),
			  (long long)shared_before);
	zdtm_pass();
}
