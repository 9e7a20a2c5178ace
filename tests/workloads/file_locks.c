/*
 * File locks of every owner kind on one file: the parent holds a POSIX
 * write lock on bytes 0-99; its child a POSIX read lock on 200-299 (through
 * the description it inherited), an OFD write lock on 400-499 through a
 * description of its own, and a flock(LOCK_SH) through another one. At
 * SIGTERM each process checks from a fresh description (F_OFD_GETLK sees
 * every record lock, F_GETLK those of other processes) that each lock is
 * there, with its range, type and owner, that nothing else is locked, and
 * that flock(LOCK_EX|LOCK_NB) fails while LOCK_SH succeeds. The parent
 * checks first, then the child, which reports through a pipe. (No process
 * closes an fd on the file before the others are done: that would drop its
 * POSIX locks.)
 */
#include "zdtm.h"
#include <fcntl.h>
#include <sys/file.h>
#include <sys/wait.h>

static volatile sig_atomic_t leave;
static char path[4096];
static char why[256];

static void on_usr1(int sig)
{
	(void)sig;
	leave = 1;
}

static int lock(int fd, int cmd, short type, off_t start, off_t len)
{
	struct flock fl = { .l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len };

	return fcntl(fd, cmd, &fl);
}

/*
 * The lock F_GETLK or F_OFD_GETLK (cmd) finds against a write lock on
 * start+len from fd: sets why and returns -1 unless it is of type `type`
 * (F_UNLCK: none) with range want_start+want_len and holder pid `holder`
 * (checked when type is not F_UNLCK; -1 for an OFD lock).
 */
static int expect(int fd, int cmd, off_t start, off_t len, short type, off_t want_start,
		  off_t want_len, pid_t holder)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = start, .l_len = len };
	const char *name = cmd == F_GETLK ? "F_GETLK" : "F_OFD_GETLK";

	if (fcntl(fd, cmd, &fl)) {
		snprintf(why, sizeof why, "%s of %lld+%lld: %s", name, (long long)start,
			 (long long)len, strerror(errno));
		return -1;
	}
	if (fl.l_type != type ||
	    (type != F_UNLCK &&
	     (fl.l_start != want_start || fl.l_len != want_len || fl.l_pid != holder))) {
		snprintf(why, sizeof why,
			 "%s of %lld+%lld found type %d at %lld+%lld held by %d, expected type %d at %lld+%lld held by %d",
			 name, (long long)start, (long long)len, fl.l_type, (long long)fl.l_start,
			 (long long)fl.l_len, fl.l_pid, type, (long long)want_start, (long long)want_len,
			 holder);
		return -1;
	}
	return 0;
}

/* The checks every process makes from a fresh description. */
static int check_all(pid_t parent, pid_t child, int self_is_parent)
{
	int fresh = open(path, O_RDWR), other;

	if (fresh < 0) {
		snprintf(why, sizeof why, "open %.200s: %s", path, strerror(errno));
		return -1;
	}
	/* Every record lock, as a new description sees them. */
	if (expect(fresh, F_OFD_GETLK, 0, 100, F_WRLCK, 0, 100, parent) ||
	    expect(fresh, F_OFD_GETLK, 200, 100, F_RDLCK, 200, 100, child) ||
	    expect(fresh, F_OFD_GETLK, 400, 100, F_WRLCK, 400, 100, -1) ||
	    expect(fresh, F_OFD_GETLK, 100, 100, F_UNLCK, 0, 0, 0) ||
	    expect(fresh, F_OFD_GETLK, 300, 100, F_UNLCK, 0, 0, 0) ||
	    expect(fresh, F_OFD_GETLK, 500, 0, F_UNLCK, 0, 0, 0))
		return -1;
	/* The read lock is a read lock: another read lock is granted. */
	if (lock(fresh, F_OFD_SETLK, F_RDLCK, 200, 100) || lock(fresh, F_OFD_SETLK, F_UNLCK, 200, 100)) {
		snprintf(why, sizeof why, "a read lock on 200+100: %s", strerror(errno));
		return -1;
	}
	/* POSIX locks of this process do not conflict with its own F_GETLK. */
	if (self_is_parent ? expect(fresh, F_GETLK, 0, 100, F_UNLCK, 0, 0, 0) ||
				     expect(fresh, F_GETLK, 200, 100, F_RDLCK, 200, 100, child)
			   : expect(fresh, F_GETLK, 0, 100, F_WRLCK, 0, 100, parent) ||
				     expect(fresh, F_GETLK, 200, 100, F_UNLCK, 0, 0, 0))
		return -1;
	/* The flock() lock is shared. */
	other = open(path, O_RDONLY);
	if (other < 0 || flock(other, LOCK_EX | LOCK_NB) == 0 || errno != EWOULDBLOCK) {
		snprintf(why, sizeof why, "flock(LOCK_EX|LOCK_NB) on a fresh description: %s",
			 other < 0 ? strerror(errno) : "granted or wrong error");
		return -1;
	}
	if (flock(other, LOCK_SH | LOCK_NB) || flock(other, LOCK_UN)) {
		snprintf(why, sizeof why, "flock(LOCK_SH|LOCK_NB) on a fresh description: %s",
			 strerror(errno));
		return -1;
	}
	/* Neither is closed: a close would drop this process's POSIX locks. */
	return 0;
}

static void child(int fd, int report, pid_t parent)
{
	int ofd, fl;

	signal(SIGTERM, SIG_DFL);
	signal(SIGUSR1, on_usr1);
	ofd = open(path, O_RDWR);
	fl = open(path, O_RDONLY);
	if (ofd < 0 || fl < 0 || lock(fd, F_SETLK, F_RDLCK, 200, 100) ||
	    lock(ofd, F_OFD_SETLK, F_WRLCK, 400, 100) || flock(fl, LOCK_SH | LOCK_NB)) {
		snprintf(why, sizeof why, "taking the child's locks: %s", strerror(errno));
		goto out;
	}
	if (write(report, "R", 1) != 1)
		_exit(2);
	while (!leave)
		zdtm_sleep_ms(10);
	why[0] = '\0';
	if (check_all(parent, getpid(), 0))
		goto out;
	/* The OFD lock is this description's: it does not conflict with it. */
	if (expect(ofd, F_OFD_GETLK, 400, 100, F_UNLCK, 0, 0, 0))
		goto out;
	/* The flock() lock is this description's, and the only one. */
	if (flock(fl, LOCK_EX | LOCK_NB))
		snprintf(why, sizeof why, "upgrading the child's flock(): %s", strerror(errno));
out:
	if (write(report, why, sizeof why) != sizeof why)
		_exit(2);
	_exit(why[0] ? 1 : 0);
}

int main(int argc, char **argv)
{
	int fd, report[2], status;
	char ready;
	pid_t pid;

	zdtm_init();
	if (argc < 2)
		zdtm_fail("usage: file_locks DIR");
	snprintf(path, sizeof path, "%s/locked", argv[1]);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || ftruncate(fd, 1000) || pipe(report))
		zdtm_fail("creating %s: %s", path, strerror(errno));
	if (lock(fd, F_SETLK, F_WRLCK, 0, 100))
		zdtm_fail("the parent's lock: %s", strerror(errno));
	pid = fork();
	if (pid < 0)
		zdtm_fail("fork: %s", strerror(errno));
	if (pid == 0)
		child(fd, report[1], getppid());
	if (read(report[0], &ready, 1) != 1 || ready != 'R') {
		if (read(report[0], why, sizeof why) > 0)
			zdtm_fail("child: %s", why);
		zdtm_fail("the child did not take its locks");
	}
	zdtm_ready();
	zdtm_wait_stop();
	if (check_all(getpid(), pid, 1))
		zdtm_fail("parent: %s", why);
	kill(pid, SIGUSR1);
	if (read(report[0], why, sizeof why) != sizeof why)
		zdtm_fail("the child did not report");
	if (why[0])
		zdtm_fail("child: %s", why);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
		zdtm_fail("the child ended with status %#x", status);
	zdtm_pass();
}
