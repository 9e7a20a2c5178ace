/*
 * Files and credentials in flight in unix sockets (sent, not received
 * yet): on a datagram pair, the read end of a pipe (holding "pipe-data",
 * closed by the sender), an eventfd (count 5, closed), a file DIR/file
 * opened read-only at offset 3 (closed), then a memfd ("mem") and the
 * pipe's write end (which the process also keeps) in one message; on a
 * stream pair, "abc" with an eventfd (count 7); on a datagram pair with
 * SO_PASSCRED, a message with credentials (our PID, uid and gid 65534).
 * At SIGTERM each message comes with its files, of the same kind and
 * state, and the credentials as sent.
 */
#include "zdtm.h"
#include <fcntl.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>

static void send_fds(int sk, const char *msg, const int *fds, int n)
{
	char ctl[CMSG_SPACE(sizeof(int) * 4)];
	struct iovec iov = { .iov_base = (void *)msg, .iov_len = strlen(msg) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	memset(ctl, 0, sizeof ctl);
	if (n) {
		struct cmsghdr *c;

		mh.msg_control = ctl;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)n);
	}
	if (sendmsg(sk, &mh, 0) != (ssize_t)strlen(msg))
		zdtm_fail("sendmsg %s: %s", msg, strerror(errno));
}

/* Receives message `want` with exactly `n` fds into fds. */
static void recv_fds(int sk, const char *want, int *fds, int n)
{
	char buf[32], ctl[CMSG_SPACE(sizeof(int) * 8)];
	struct iovec iov = { .iov_base = buf, .iov_len = strlen(want) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
			     .msg_controllen = sizeof ctl };
	struct cmsghdr *c;
	ssize_t got = recvmsg(sk, &mh, MSG_DONTWAIT);
	int have = 0;

	if (got != (ssize_t)strlen(want) || memcmp(buf, want, (size_t)got))
		zdtm_fail("message %s: got %zd bytes (%s)", want, got,
			  got < 0 ? strerror(errno) : "other bytes");
	for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			have = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			if (have == n)
				memcpy(fds, CMSG_DATA(c), sizeof(int) * (size_t)n);
		}
	if (have != n)
		zdtm_fail("message %s came with %d fds, not %d", want, have, n);
}

static void expect_read(int fd, const char *want, const char *what)
{
	char buf[32];
	ssize_t n = read(fd, buf, sizeof buf);

	if (n != (ssize_t)strlen(want) || memcmp(buf, want, (size_t)n))
		zdtm_fail("%s: read %zd bytes (%s), not \"%s\"", what, n,
			  n < 0 ? strerror(errno) : "other bytes", want);
}

static void expect_count(int fd, uint64_t want, const char *what)
{
	uint64_t v;

	if (read(fd, &v, sizeof v) != sizeof v || v != want)
		zdtm_fail("%s: not an eventfd counting %llu", what, (unsigned long long)want);
}

int main(int argc, char **argv)
{
	int dg[2], st[2], cr[2], p[2], ev, file, mem, two[2], got[2], on = 1;
	char path[4096];

	zdtm_init();
	if (argc < 2)
		zdtm_fail("usage: unix_scm DIR");
	if (socketpair(AF_UNIX, SOCK_DGRAM, 0, dg) || socketpair(AF_UNIX, SOCK_STREAM, 0, st) ||
	    socketpair(AF_UNIX, SOCK_DGRAM, 0, cr) || pipe(p))
		zdtm_fail("socketpair/pipe: %s", strerror(errno));
	if (write(p[1], "pipe-data", 9) != 9)
		zdtm_fail("pipe write: %s", strerror(errno));
	send_fds(dg[0], "fd1", &p[0], 1);
	close(p[0]);
	ev = eventfd(5, 0);
	send_fds(dg[0], "ev", &ev, 1);
	close(ev);
	snprintf(path, sizeof path, "%s/file", argv[1]);
	file = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (file < 0 || write(file, "0123456789", 10) != 10)
		zdtm_fail("%s: %s", path, strerror(errno));
	close(file);
	file = open(path, O_RDONLY);
	if (file < 0 || lseek(file, 3, SEEK_SET) != 3)
		zdtm_fail("%s: %s", path, strerror(errno));
	send_fds(dg[0], "file", &file, 1);
	close(file);
	mem = memfd_create("scm", 0);
	if (mem < 0 || write(mem, "mem", 3) != 3)
		zdtm_fail("memfd: %s", strerror(errno));
	two[0] = mem;
	two[1] = p[1];
	send_fds(dg[0], "two", two, 2);
	close(mem);
	ev = eventfd(7, 0);
	send_fds(st[0], "abc", &ev, 1);
	close(ev);

	if (setsockopt(cr[1], SOL_SOCKET, SO_PASSCRED, &on, sizeof on))
		zdtm_fail("SO_PASSCRED: %s", strerror(errno));
	{
		struct ucred uc = { .pid = getpid(), .uid = 65534, .gid = 65534 };
		char ctl[CMSG_SPACE(sizeof uc)];
		struct iovec iov = { .iov_base = "cred", .iov_len = 4 };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
				     .msg_controllen = sizeof ctl };
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);

		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_CREDENTIALS;
		c->cmsg_len = CMSG_LEN(sizeof uc);
		memcpy(CMSG_DATA(c), &uc, sizeof uc);
		if (sendmsg(cr[0], &mh, 0) != 4)
			zdtm_fail("sending credentials: %s", strerror(errno));
	}
	zdtm_ready();
	zdtm_wait_stop();

	recv_fds(dg[1], "fd1", got, 1);
	expect_read(got[0], "pipe-data", "the pipe in flight");
	int rd = got[0];
	recv_fds(dg[1], "ev", got, 1);
	expect_count(got[0], 5, "the eventfd in flight");
	recv_fds(dg[1], "file", got, 1);
	expect_read(got[0], "3456789", "the file in flight");
	if (fcntl(got[0], F_GETFL) & O_ACCMODE)
		zdtm_fail("the file in flight is no longer read-only");
	recv_fds(dg[1], "two", got, 2);
	if (pread(got[0], path, 3, 0) != 3 || memcmp(path, "mem", 3))
		zdtm_fail("the memfd in flight lost its data");
	if (write(got[1], "w", 1) != 1 || write(p[1], "k", 1) != 1)
		zdtm_fail("the pipe's write end in flight: %s", strerror(errno));
	expect_read(rd, "wk", "the pipe through both write ends");
	recv_fds(st[1], "abc", got, 1);
	expect_count(got[0], 7, "the eventfd in flight on the stream");

	{
		char buf[8], ctl[CMSG_SPACE(sizeof(struct ucred))];
		struct iovec iov = { .iov_base = buf, .iov_len = sizeof buf };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
				     .msg_controllen = sizeof ctl };
		struct cmsghdr *c;
		struct ucred uc = { 0 };

		if (recvmsg(cr[1], &mh, MSG_DONTWAIT) != 4 || memcmp(buf, "cred", 4))
			zdtm_fail("the message with credentials is gone: %s", strerror(errno));
		for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
			if (c->cmsg_type == SCM_CREDENTIALS)
				memcpy(&uc, CMSG_DATA(c), sizeof uc);
		if (uc.pid != getpid() || uc.uid != 65534 || uc.gid != 65534)
			zdtm_fail("credentials %d %u %u, not %d 65534 65534", uc.pid, uc.uid, uc.gid,
				  getpid());
	}
	zdtm_pass();
}
