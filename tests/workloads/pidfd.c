/*
 * pidfds (as CRIU's pidfd_child, pidfd_kill, pidfd_dead, pidfd_diffdead):
 * - a pidfd of a child that sleeps (live) and one of the process itself,
 *   O_NONBLOCK (PIDFD_NONBLOCK);
 * - pidfds of two children that have exited and been reaped (dead), one
 *   of them dup'ed and opened a second time (as CRIU's pidfd_dead);
 * - a PIDFD_THREAD pidfd of a second thread (as CRIU's pidfd_of_thread).
 * At SIGTERM: the live pidfd still names the child (fdinfo Pid:), is not
 * readable, pidfd_send_signal(0) works, SIGKILL through it makes it
 * readable and waitid(P_PIDFD) reaps the child killed; the self pidfd
 * names this process and kept O_NONBLOCK; the dead pidfds are readable,
 * pidfd_send_signal gives ESRCH, fdinfo shows Pid: -1, the two refer to
 * different processes (inodes), the second open of one the same process
 * (inode) in a description of its own, and the dup still shares its
 * description;
 * the thread pidfd names the thread, kept PIDFD_THREAD, is not readable
 * until the thread exits, and is then.
 */
#include "zdtm.h"
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

static volatile int thread_tid, thread_stop;

static void *thread_main(void *arg)
{
	(void)arg;
	thread_tid = (int)syscall(SYS_gettid);
	while (!thread_stop)
		zdtm_sleep_ms(5);
	return NULL;
}

static int pidfd_open(pid_t pid, unsigned flags)
{
	return (int)syscall(SYS_pidfd_open, pid, flags);
}

static int send_signal(int pidfd, int sig)
{
	return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

static int readable(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	if (poll(&p, 1, ms) < 0)
		zdtm_fail("poll: %s", strerror(errno));
	return (p.revents & POLLIN) != 0;
}

/* The "Pid:" of pidfd `fd`'s fdinfo. */
static long fdinfo_pid(int fd)
{
	char path[64], buf[512], *p;

	snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
	if (zdtm_read_file(path, buf, sizeof buf) < 0 || !(p = strstr(buf, "\nPid:")))
		zdtm_fail("no Pid: in %s", path);
	return strtol(p + 5, NULL, 10);
}

static pid_t sleeper(void)
{
	pid_t pid = fork();

	if (pid < 0)
		zdtm_fail("fork: %s", strerror(errno));
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		for (;;)
			pause();
	}
	return pid;
}

/* A pidfd of a child that has exited and been reaped; `again`, if not
 * NULL, gets a second one of it. */
static int dead_pidfd(int *again)
{
	pid_t pid = fork();
	int fd;

	if (pid < 0)
		zdtm_fail("fork: %s", strerror(errno));
	if (pid == 0)
		_exit(0);
	fd = pidfd_open(pid, 0);
	if (again)
		*again = pidfd_open(pid, 0);
	if (fd < 0 || (again && *again < 0) || waitpid(pid, NULL, 0) != pid)
		zdtm_fail("dead child: %s", strerror(errno));
	return fd;
}

int main(void)
{
	int live, self, dead1, dead2, dead1_dup, dead1_again, thread_fd;
	pthread_t thread;
	pid_t child;
	siginfo_t si;
	struct stat s1, s2;

	zdtm_init();
	child = sleeper();
	live = pidfd_open(child, 0);
	self = pidfd_open(getpid(), O_NONBLOCK);
	dead1 = dead_pidfd(&dead1_again);
	dead2 = dead_pidfd(NULL);
	dead1_dup = dup(dead1);
	if (live < 0 || self < 0 || dead1_dup < 0)
		zdtm_fail("pidfd_open: %s", strerror(errno));
	if (pthread_create(&thread, NULL, thread_main, NULL))
		zdtm_fail("pthread_create");
	while (!thread_tid)
		zdtm_sleep_ms(1);
	/* PIDFD_THREAD is O_EXCL. */
	thread_fd = pidfd_open(thread_tid, O_EXCL);
	if (thread_fd < 0)
		zdtm_fail("pidfd_open(PIDFD_THREAD): %s", strerror(errno));
	zdtm_ready();
	zdtm_wait_stop();

	if (fdinfo_pid(live) != child)
		zdtm_fail("the live pidfd names %ld, not %d", fdinfo_pid(live), child);
	if (readable(live, 0))
		zdtm_fail("the live pidfd is readable while its child runs");
	if (send_signal(live, 0))
		zdtm_fail("pidfd_send_signal(0) to the child: %s", strerror(errno));
	if (fdinfo_pid(self) != getpid())
		zdtm_fail("the self pidfd names %ld", fdinfo_pid(self));
	if (!(fcntl(self, F_GETFL) & O_NONBLOCK) || (fcntl(live, F_GETFL) & O_NONBLOCK))
		zdtm_fail("O_NONBLOCK moved between the pidfds");
	for (int i = 0; i < 2; i++) {
		int d = i ? dead2 : dead1;

		if (fdinfo_pid(d) != -1)
			zdtm_fail("dead pidfd %d names %ld", i, fdinfo_pid(d));
		if (!readable(d, 0))
			zdtm_fail("dead pidfd %d is not readable", i);
		if (send_signal(d, 0) != -1 || errno != ESRCH)
			zdtm_fail("pidfd_send_signal to dead pidfd %d: %s", i, strerror(errno));
	}
	if (fstat(dead1, &s1) || fstat(dead2, &s2) || s1.st_ino == s2.st_ino)
		zdtm_fail("the two dead pidfds refer to one process");
	if (fstat(dead1_again, &s2) || s1.st_ino != s2.st_ino)
		zdtm_fail("the two pidfds of one dead process refer to two");
	if (fcntl(dead1_dup, F_SETFL, O_NONBLOCK) || !(fcntl(dead1, F_GETFL) & O_NONBLOCK))
		zdtm_fail("the dup of a dead pidfd no longer shares its description");
	if (fcntl(dead1_again, F_GETFL) & O_NONBLOCK)
		zdtm_fail("the second pidfd of a dead process shares the first's description");

	if (fdinfo_pid(thread_fd) != thread_tid)
		zdtm_fail("the thread pidfd names %ld, not %d", fdinfo_pid(thread_fd), thread_tid);
	if (!(fcntl(thread_fd, F_GETFL) & O_EXCL))
		zdtm_fail("the thread pidfd lost PIDFD_THREAD");
	if (readable(thread_fd, 0))
		zdtm_fail("the thread pidfd is readable while its thread runs");
	thread_stop = 1;
	if (!readable(thread_fd, 2000))
		zdtm_fail("the thread pidfd is not readable once its thread ended");
	pthread_join(thread, NULL);

	if (send_signal(live, SIGKILL))
		zdtm_fail("pidfd_send_signal(SIGKILL): %s", strerror(errno));
	if (!readable(live, 2000))
		zdtm_fail("the pidfd of the killed child is not readable");
	memset(&si, 0, sizeof si);
	if (waitid(P_PIDFD, (id_t)live, &si, WEXITED) || si.si_pid != child ||
	    si.si_code != CLD_KILLED || si.si_status != SIGKILL)
		zdtm_fail("waitid(P_PIDFD): %s (pid %d code %d)", strerror(errno), si.si_pid, si.si_code);
	zdtm_pass();
}
