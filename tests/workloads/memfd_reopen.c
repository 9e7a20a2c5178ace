/*
 * A memfd opened again read-only by a child through /proc/self/fd (a new
 * description of the same memfd), the child closing the fd it inherited;
 * the child has read 3 bytes through its description. At SIGTERM the
 * parent writes new contents through its own (read-write) fd and wakes the
 * child, which checks that its description is still read-only, at offset
 * 3, and reads the parent's new contents: the same memfd, not a copy.
 */
#include "zdtm.h"
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>

static volatile sig_atomic_t woken;

static void on_usr1(int sig)
{
	(void)sig;
	woken = 1;
}

/* The child's checks; its exit status says which failed. */
static int child(int fd, int ready)
{
	char path[64], buf[16];
	int ro, flags;

	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	ro = open(path, O_RDONLY);
	if (ro < 0 || close(fd) || read(ro, buf, 3) != 3)
		return 10;
	if (write(ready, "r", 1) != 1)
		return 10;
	while (!woken)
		zdtm_sleep_ms(10);
	flags = fcntl(ro, F_GETFL);
	if (flags < 0 || (flags & O_ACCMODE) != O_RDONLY)
		return 11;
	if (write(ro, "x", 1) != -1 || errno != EBADF)
		return 12;
	if (lseek(ro, 0, SEEK_CUR) != 3)
		return 13;
	memset(buf, 0, sizeof buf);
	if (pread(ro, buf, 6, 0) != 6 || memcmp(buf, "after!", 6))
		return 14;
	return 0;
}

int main(void)
{
	int fd, status, flags, ready[2];
	char c;
	pid_t pid;

	zdtm_init();
	fd = memfd_create("shared", MFD_CLOEXEC);
	if (fd < 0 || write(fd, "before", 6) != 6)
		zdtm_fail("memfd: %s", strerror(errno));
	signal(SIGUSR1, on_usr1);
	if (pipe(ready))
		zdtm_fail("pipe: %s", strerror(errno));
	pid = fork();
	if (pid < 0)
		zdtm_fail("fork: %s", strerror(errno));
	if (pid == 0) {
		signal(SIGTERM, SIG_DFL);
		_exit(child(fd, ready[1]));
	}
	/* The child has reopened it before the checkpoint. */
	if (read(ready[0], &c, 1) != 1)
		zdtm_fail("the child did not reopen the memfd");
	zdtm_ready();
	zdtm_wait_stop();

	flags = fcntl(fd, F_GETFL);
	if (flags < 0 || (flags & O_ACCMODE) != O_RDWR)
		zdtm_fail("the parent's memfd has flags %#o", flags);
	if (pwrite(fd, "after!", 6, 0) != 6)
		zdtm_fail("pwrite: %s", strerror(errno));
	kill(pid, SIGUSR1);
	if (waitpid(pid, &status, 0) != pid)
		zdtm_fail("waitpid: %s", strerror(errno));
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		zdtm_fail("the child's check %d failed (status %#x)", WEXITSTATUS(status), status);
	zdtm_pass();
}
