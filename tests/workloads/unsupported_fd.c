/*
 * Refusal: holds an fd ferry cannot checkpoint yet at fd 10 — argv[2] is
 * "socket" (an established TCP connection on 127.0.0.1: the client socket
 * at fd 10, the accepted one at 11, the listener at 12), "unix" (a unix
 * stream socket at 10 connected to the abstract name
 * "ferry-zdtm-outside-<parent's PID>", on which the test listens), both
 * held in part outside the process, or "unix_in_flight" (a datagram
 * socket at 10 with a unix socket in flight queued on it, sent from its
 * peer at 11). Checkpoint
 * must refuse it without disturbing it; at SIGTERM the fds must still work.
 */
#include "zdtm.h"
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#define FD 10

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
		int lst;

		addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		lst = socket(AF_INET, SOCK_STREAM, 0);
		if (lst < 0 || bind(lst, (struct sockaddr *)&addr, sizeof(addr)) || listen(lst, 1) ||
		    getsockname(lst, (struct sockaddr *)&addr, &addr_len))
			zdtm_fail("listening socket: %s", strerror(errno));
		fds[0] = socket(AF_INET, SOCK_STREAM, 0);
		if (fds[0] < 0 || connect(fds[0], (struct sockaddr *)&addr, sizeof(addr)))
			zdtm_fail("connect: %s", strerror(errno));
		fds[1] = accept(lst, NULL, NULL);
		if (fds[1] < 0 || dup2(fds[0], FD) != FD || dup2(fds[1], FD + 1) != FD + 1 ||
		    dup2(lst, FD + 2) != FD + 2)
			zdtm_fail("accept: %s", strerror(errno));
		close(fds[0]);
		close(fds[1]);
		close(lst);
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
		if (!S_ISSOCK(st.st_mode) || send(FD, "s", 1, 0) != 1 || recv(FD + 1, &c, 1, 0) != 1 ||
		    c != 's')
			zdtm_fail("the connection at fds %d and %d no longer carries data", FD, FD + 1);
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
