/*
 * Refusal: holds an fd ferry cannot checkpoint yet at fd 10 — argv[2] is
 * "socket" (two multipath TCP sockets, IPPROTO_MPTCP, still connecting,
 * in SYN_SENT, at fds 10 and 11: their SYNs are dropped by a listener on
 * 127.0.0.1, at fd 12, whose
 * accept queue of length 0 is full with a first connection, whose client
 * end is at fd 13), "unix" (a unix
 * stream socket at 10 connected to the abstract name
 * "ferry-zdtm-outside-<parent's PID>", on which the test listens), both
 * held in part outside the process, or "unix_in_flight" (a datagram
 * socket at 10 with a unix socket in flight queued on it, sent from its
 * peer at 11). Checkpoint
 * must refuse it without disturbing it; at SIGTERM the fds must still work.
 */
#include "zdtm.h"
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#define FD 10

/* The TCP state of socket fd, or -1. */
static int tcp_state(int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len))
		return -1;
	return ti.tcpi_state;
}

int main(int argc, char **argv)
{
	volatile unsigned long count = 0;
	int is_socket, is_unix, is_in_flight, fds[2], on = 0;
	socklen_t len = sizeof(on);
	struct stat st;
	char c;

	if (argc < 3 || (strcmp(argv[2], "socket") && strcmp(argv[2], "unix") &&
			 strcmp(argv[2], "unix_in_flight")))
		zdtm_fail("usage: unsupported_fd DIR socket|unix|unix_in_flight");
	is_socket = !strcmp(argv[2], "socket");
	is_unix = !strcmp(argv[2], "unix");
	is_in_flight = !strcmp(argv[2], "unix_in_flight");
	zdtm_init();
	if (is_socket) {
		struct sockaddr_in addr = { .sin_family = AF_INET };
		socklen_t addr_len = sizeof(addr);
		int lst, first;

		addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		lst = socket(AF_INET, SOCK_STREAM, 0);
		if (lst < 0 || bind(lst, (struct sockaddr *)&addr, sizeof(addr)) || listen(lst, 0) ||
		    getsockname(lst, (struct sockaddr *)&addr, &addr_len) ||
		    dup2(lst, FD + 2) != FD + 2)
			zdtm_fail("listening socket: %s", strerror(errno));
		close(lst);
		first = socket(AF_INET, SOCK_STREAM, 0);
		if (first < 0 || connect(first, (struct sockaddr *)&addr, sizeof(addr)) ||
		    dup2(first, FD + 3) != FD + 3)
			zdtm_fail("connect: %s", strerror(errno));
		close(first);
		for (int i = 0; i < 2; i++) {
			fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, IPPROTO_MPTCP);
			if (fds[i] < 0 ||
			    (connect(fds[i], (struct sockaddr *)&addr, sizeof(addr)) &&
			     errno != EINPROGRESS) ||
			    dup2(fds[i], FD + i) != FD + i)
				zdtm_fail("connect: %s", strerror(errno));
			close(fds[i]);
		}
		if (tcp_state(FD) != TCP_SYN_SENT || tcp_state(FD + 1) != TCP_SYN_SENT)
			zdtm_fail("the connections are not in SYN_SENT");
	} else if (is_unix) {
		struct sockaddr_un addr = { .sun_family = AF_UNIX };
		int n = snprintf(addr.sun_path + 1, sizeof(addr.sun_path) - 1,
				 "ferry-zdtm-outside-%d", (int)getppid());
		socklen_t addr_len = (socklen_t)(sizeof(addr.sun_family) + 1 + n);

		fds[0] = socket(AF_UNIX, SOCK_STREAM, 0);
		if (fds[0] < 0 || connect(fds[0], (struct sockaddr *)&addr, addr_len) ||
		    dup2(fds[0], FD) != FD)
			zdtm_fail("connecting to @%s: %s", addr.sun_path + 1, strerror(errno));
		close(fds[0]);
	} else if (is_in_flight) {
		char ctl[CMSG_SPACE(sizeof(int))];
		struct iovec iov = { .iov_base = "s", .iov_len = 1 };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
				     .msg_controllen = sizeof(ctl) };
		struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
		int sent = socket(AF_UNIX, SOCK_STREAM, 0);

		if (sent < 0 || socketpair(AF_UNIX, SOCK_DGRAM, 0, fds) || dup2(fds[1], FD) != FD ||
		    dup2(fds[0], FD + 1) != FD + 1)
			zdtm_fail("socketpair: %s", strerror(errno));
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &sent, sizeof(int));
		if (sendmsg(FD + 1, &mh, 0) != 1)
			zdtm_fail("sending a unix socket: %s", strerror(errno));
		close(sent);
		close(fds[0]);
		close(fds[1]);
	}
	zdtm_ready();

	while (!zdtm_stop) {
		count++;
		if (count % 100000 == 0)
			zdtm_sleep_ms(1);
	}

	if (count == 0 || fstat(FD, &st))
		zdtm_fail("fd %d is gone", FD);
	if (is_socket) {
		int acc = accept(FD + 2, NULL, NULL);

		if (!S_ISSOCK(st.st_mode) || acc < 0 || send(FD + 3, "s", 1, 0) != 1 ||
		    recv(acc, &c, 1, 0) != 1 || c != 's')
			zdtm_fail("the first connection no longer carries data");
		for (int i = 0; i < 2; i++) {
			int s = tcp_state(FD + i), err = -1;
			socklen_t elen = sizeof(err);

			if ((s != TCP_SYN_SENT && s != TCP_ESTABLISHED) ||
			    getsockopt(FD + i, SOL_SOCKET, SO_ERROR, &err, &elen) || err)
				zdtm_fail("the connection at fd %d is in state %d, error %d", FD + i,
					  s, err);
		}
		if (getsockopt(FD + 2, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) || !on)
			zdtm_fail("fd %d is no longer a listening socket", FD + 2);
	} else if (is_in_flight) {
		if (!S_ISSOCK(st.st_mode) || recv(FD, &c, 1, MSG_DONTWAIT) != 1 || c != 's')
			zdtm_fail("the message with a unix socket in flight is gone");
	} else if (!S_ISSOCK(st.st_mode) || send(FD, "u", 1, 0) != 1) {
		zdtm_fail("the unix socket at fd %d no longer sends", FD);
	}
	zdtm_pass();
}
