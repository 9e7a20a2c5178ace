/*
 * A file deleted while open (a "ghost file"): 4 pages and 100 bytes with
 * a one-page hole at page 2, mode 0640. It is opened twice: fd A read-write
 * at offset 1000, inherited by a child (so the two share its offset), and
 * fd B write-only with O_APPEND at offset 500; then it is unlinked. At
 * SIGTERM: both fds still lead to the one file, unlinked (st_nlink 0, no
 * path left), with its size, mode and contents (the hole reads as zeros);
 * the offsets and flags are intact; the child reads 10 bytes through its
 * copy of A, which moves the parent's offset too; a write through B lands
 * at the end of the file.
 */
#include "zdtm.h"
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define PG 4096
#define SIZE (4 * PG + 100)

static volatile sig_atomic_t go;

static void on_usr1(int sig)
{
	(void)sig;
	go = 1;
}

static char expect(long off)
{
	if (off >= 2 * PG && off < 3 * PG)
		return 0;
	return (char)('a' + (off / 7) % 26);
}

static void check_stat(int fd, const char *which, const struct stat *other)
{
	struct stat st;

	if (fstat(fd, &st))
		zdtm_fail("fstat of fd %s: %s", which, strerror(errno));
	if (!S_ISREG(st.st_mode) || (st.st_mode & 07777) != 0640)
		zdtm_fail("fd %s: mode %o", which, st.st_mode);
	if (st.st_nlink != 0)
		zdtm_fail("fd %s: st_nlink %ld", which, (long)st.st_nlink);
	if (st.st_size != SIZE)
		zdtm_fail("fd %s: size %lld", which, (long long)st.st_size);
	if (other && (st.st_ino != other->st_ino || st.st_dev != other->st_dev))
		zdtm_fail("fd %s leads to another file than fd A", which);
}

int main(int argc, char **argv)
{
	char path[PATH_MAX], buf[SIZE + 3];
	int a, b, report[2], status;
	struct stat st;
	pid_t pid;

	zdtm_init();
	if (argc < 2)
		zdtm_fail("usage: ghost_file DIR");
	mkdir(argv[1], 0755);
	snprintf(path, sizeof path, "%s/ghost", argv[1]);
	unlink(path);
	a = open(path, O_RDWR | O_CREAT | O_EXCL, 0640);
	if (a < 0)
		zdtm_fail("open %s: %s", path, strerror(errno));
	if (fchmod(a, 0640) || ftruncate(a, SIZE))
		zdtm_fail("fchmod/ftruncate: %s", strerror(errno));
	for (long i = 0; i < SIZE; i++)
		buf[i] = expect(i);
	if (pwrite(a, buf, 2 * PG, 0) != 2 * PG ||
	    pwrite(a, buf + 3 * PG, SIZE - 3 * PG, 3 * PG) != SIZE - 3 * PG)
		zdtm_fail("pwrite: %s", strerror(errno));
	b = open(path, O_WRONLY | O_APPEND);
	if (b < 0)
		zdtm_fail("open %s again: %s", path, strerror(errno));
	if (lseek(a, 1000, SEEK_SET) != 1000 || lseek(b, 500, SEEK_SET) != 500)
		zdtm_fail("lseek: %s", strerror(errno));
	if (pipe(report))
		zdtm_fail("pipe: %s", strerror(errno));
	pid = fork();
	if (pid < 0)
		zdtm_fail("fork: %s", strerror(errno));
	if (pid == 0) {
		char got[10], ok = 1;

		signal(SIGTERM, SIG_DFL);
		signal(SIGUSR1, on_usr1);
		while (!go)
			zdtm_sleep_ms(10);
		if (read(a, got, sizeof got) != sizeof got)
			ok = 0;
		for (int i = 0; ok && i < 10; i++)
			ok = got[i] == expect(1000 + i);
		_exit(write(report[1], &ok, 1) == 1 ? 0 : 2);
	}
	if (unlink(path))
		zdtm_fail("unlink %s: %s", path, strerror(errno));
	zdtm_ready();
	zdtm_wait_stop();

	check_stat(a, "A", NULL);
	fstat(a, &st);
	check_stat(b, "B", &st);
	if (access(path, F_OK) == 0 || errno != ENOENT)
		zdtm_fail("%s exists again", path);
	if ((fcntl(a, F_GETFL) & (O_ACCMODE | O_APPEND)) != O_RDWR)
		zdtm_fail("fd A has flags %#x", fcntl(a, F_GETFL));
	if ((fcntl(b, F_GETFL) & (O_ACCMODE | O_APPEND)) != (O_WRONLY | O_APPEND))
		zdtm_fail("fd B has flags %#x", fcntl(b, F_GETFL));
	if (lseek(a, 0, SEEK_CUR) != 1000 || lseek(b, 0, SEEK_CUR) != 500)
		zdtm_fail("the offsets are %lld and %lld", (long long)lseek(a, 0, SEEK_CUR),
			  (long long)lseek(b, 0, SEEK_CUR));
	if (pread(a, buf, SIZE, 0) != SIZE)
		zdtm_fail("pread: %s", strerror(errno));
	for (long i = 0; i < SIZE; i++)
		if (buf[i] != expect(i))
			zdtm_fail("byte %ld is %d, expected %d", i, buf[i], expect(i));

	char ok = 0;
	kill(pid, SIGUSR1);
	if (read(report[0], &ok, 1) != 1 || !ok)
		zdtm_fail("the child did not read the expected bytes through the shared fd");
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
		zdtm_fail("the child ended with status %#x", status);
	if (lseek(a, 0, SEEK_CUR) != 1010)
		zdtm_fail("the shared offset is %lld after the child's read",
			  (long long)lseek(a, 0, SEEK_CUR));

	if (write(b, "XYZ", 3) != 3)
		zdtm_fail("write through fd B: %s", strerror(errno));
	if (fstat(a, &st) || st.st_size != SIZE + 3)
		zdtm_fail("size %lld after an append", (long long)st.st_size);
	if (pread(a, buf, 3, SIZE) != 3 || memcmp(buf, "XYZ", 3))
		zdtm_fail("the append did not land at the end");
	zdtm_pass();
}
