/*
 * Signal-driven I/O (F_SETOWN_EX, F_SETSIG, O_ASYNC): the read end of pipe
 * A sends SIGRTMIN+1 to the process; the read end of pipe B sends
 * SIGRTMIN+2 to the main thread (F_OWNER_TID); a FIFO under argv[1],
 * opened read-write, sends plain SIGIO to the process's group (F_SETOWN
 * with a negative ID; the workload leads its own group); pipe D only has
 * F_SETSIG set, no owner and no O_ASYNC. At SIGTERM: every owner, signal
 * and O_ASYNC is as set, and writing into A, B and the FIFO raises each
 * one's signal (A and B with si_fd naming their fd), as it did before the
 * checkpoint.
 */
#include "zdtm.h"
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>

static volatile sig_atomic_t got_a, got_b, got_io, fd_a, fd_b;

static void on_rt(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	if (sig == SIGRTMIN + 1) {
		got_a++;
		fd_a = si->si_fd;
	} else {
		got_b++;
		fd_b = si->si_fd;
	}
}

static void on_io(int sig)
{
	(void)sig;
	got_io++;
}

static void owner_is(int fd, int type, pid_t pid, int sig, int async, const char *what)
{
	struct f_owner_ex ex;
	int flags = fcntl(fd, F_GETFL);

	if (fcntl(fd, F_GETOWN_EX, &ex))
		zdtm_fail("F_GETOWN_EX of %s: %s", what, strerror(errno));
	/* Without an owner, the type read back means nothing. */
	if (ex.pid != pid || (pid && ex.type != type))
		zdtm_fail("%s is owned by %d (type %d), not %d (type %d)", what, ex.pid, ex.type,
			  pid, type);
	if (fcntl(fd, F_GETSIG) != sig)
		zdtm_fail("%s sends signal %d, not %d", what, fcntl(fd, F_GETSIG), sig);
	if (!!(flags & O_ASYNC) != async)
		zdtm_fail("%s has flags %#o", what, flags);
}

/* Writes a byte into `wr` and waits up to a second for `*counter` to move. */
static void raises(int wr, int rd, volatile sig_atomic_t *counter, const char *what)
{
	sig_atomic_t before = *counter;
	char c;

	if (write(wr, "x", 1) != 1)
		zdtm_fail("writing into %s: %s", what, strerror(errno));
	for (int i = 0; i < 100 && *counter == before; i++)
		zdtm_sleep_ms(10);
	if (*counter == before)
		zdtm_fail("writing into %s raised no signal", what);
	if (read(rd, &c, 1) != 1)
		zdtm_fail("reading %s back: %s", what, strerror(errno));
}

static void check(int a[2], int b[2], int fifo, int d[2], pid_t pid)
{
	owner_is(a[0], F_OWNER_PID, pid, SIGRTMIN + 1, 1, "pipe A");
	owner_is(b[0], F_OWNER_TID, pid, SIGRTMIN + 2, 1, "pipe B");
	owner_is(fifo, F_OWNER_PGRP, pid, 0, 1, "the FIFO");
	owner_is(d[0], F_OWNER_PID, 0, SIGRTMIN + 3, 0, "pipe D");
	raises(a[1], a[0], &got_a, "pipe A");
	if (fd_a != a[0])
		zdtm_fail("pipe A's signal names fd %d, not %d", (int)fd_a, a[0]);
	raises(b[1], b[0], &got_b, "pipe B");
	if (fd_b != b[0])
		zdtm_fail("pipe B's signal names fd %d, not %d", (int)fd_b, b[0]);
	raises(fifo, fifo, &got_io, "the FIFO");
}

int main(int argc, char **argv)
{
	int a[2], b[2], d[2], fifo;
	char path[4096];
	struct sigaction sa;
	struct f_owner_ex ex;
	pid_t pid = getpid();

	zdtm_init();
	if (argc < 2)
		zdtm_fail("usage: fd_owner DIR");
	if (setpgid(0, 0))
		zdtm_fail("setpgid: %s", strerror(errno));
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_rt;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGRTMIN + 1, &sa, NULL) || sigaction(SIGRTMIN + 2, &sa, NULL))
		zdtm_fail("sigaction: %s", strerror(errno));
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_io;
	sa.sa_flags = SA_RESTART;
	if (sigaction(SIGIO, &sa, NULL))
		zdtm_fail("sigaction(SIGIO): %s", strerror(errno));

	if (pipe(a) || pipe(b) || pipe(d))
		zdtm_fail("pipe: %s", strerror(errno));
	snprintf(path, sizeof path, "%s/fifo", argv[1]);
	unlink(path);
	if (mkfifo(path, 0600))
		zdtm_fail("mkfifo: %s", strerror(errno));
	fifo = open(path, O_RDWR | O_NONBLOCK);
	if (fifo < 0)
		zdtm_fail("opening the FIFO: %s", strerror(errno));

	ex.type = F_OWNER_PID;
	ex.pid = pid;
	if (fcntl(a[0], F_SETOWN_EX, &ex) || fcntl(a[0], F_SETSIG, SIGRTMIN + 1) ||
	    fcntl(a[0], F_SETFL, O_ASYNC))
		zdtm_fail("pipe A: %s", strerror(errno));
	ex.type = F_OWNER_TID;
	ex.pid = (pid_t)syscall(SYS_gettid);
	if (fcntl(b[0], F_SETOWN_EX, &ex) || fcntl(b[0], F_SETSIG, SIGRTMIN + 2) ||
	    fcntl(b[0], F_SETFL, O_ASYNC))
		zdtm_fail("pipe B: %s", strerror(errno));
	if (fcntl(fifo, F_SETOWN, -getpgrp()) ||
	    fcntl(fifo, F_SETFL, fcntl(fifo, F_GETFL) | O_ASYNC))
		zdtm_fail("the FIFO: %s", strerror(errno));
	if (fcntl(d[0], F_SETSIG, SIGRTMIN + 3))
		zdtm_fail("pipe D: %s", strerror(errno));
	check(a, b, fifo, d, pid);

	zdtm_ready();
	zdtm_wait_stop();

	check(a, b, fifo, d, pid);
	zdtm_pass();
}
