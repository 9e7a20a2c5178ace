/*
 * An established TCP connection on loopback between a parent and its child
 * (argv[2]: "4" over 127.0.0.1, "6" over ::1, "half" over 127.0.0.1 with
 * the child's side shut down), with data queued unread both ways at any
 * checkpoint: DOWN bytes from the parent to the child, UP bytes from the
 * child to the parent. The parent's end has TCP_NODELAY (and not
 * SO_REUSEADDR), the child's keepalive with its timers, TCP_USER_TIMEOUT
 * and SO_REUSEADDR. In "half" mode the child shuts down writing
 * after its UP bytes (its end in FIN_WAIT2, the parent's in CLOSE_WAIT).
 *
 * At SIGTERM the parent tells the child (over a pipe) to check: each side
 * reads the bytes queued for it and checks them and the options; then
 * BULK bytes go up (not in "half" mode) and down on the same connection.
 * In "half" mode the parent must then read end of file, and the child
 * finds a write refused. The parent checks the child's exit status.
 * An optional argv[3] gives MiB of memory the parent fills first (for a
 * migration that must last a while).
 *
 * The parent also holds a second connection to itself, one end shut down
 * for reading (SHUT_RD) with 10 bytes queued: after restore it reads them,
 * then end of file at once.
 */
#include "zdtm.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#define DOWN 3000
#define UP 5000
#define BULK (256 * 1024)

static void send_all(int fd, size_t len, unsigned seed, const char *what)
{
	unsigned char buf[4096];

	for (size_t done = 0; done < len;) {
		size_t n = len - done < sizeof buf ? len - done : sizeof buf;
		for (size_t i = 0; i < n; i++)
			buf[i] = zdtm_pattern(done + i, seed);
		ssize_t w = send(fd, buf, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			zdtm_fail("%s: send: %s", what, strerror(errno));
		done += (size_t)w;
	}
}

static int opt(int fd, int level, int name)
{
	int v = -1;
	socklen_t len = sizeof v;

	if (getsockopt(fd, level, name, &v, &len))
		zdtm_fail("getsockopt %d/%d: %s", level, name, strerror(errno));
	return v;
}

static void child(int sock, int go, int half)
{
	char c;

	send_all(sock, UP, 1, "child");
	if (half && shutdown(sock, SHUT_WR))
		zdtm_fail("shutdown: %s", strerror(errno));
	for (;;) {
		ssize_t r = read(go, &c, 1);
		if (r == 1)
			break;
		/* The parent is gone (the original of a leave-running
		 * checkpoint, killed): nothing to check. */
		if (r == 0 || errno != EINTR)
			_exit(0);
	}
	if (!opt(sock, SOL_SOCKET, SO_KEEPALIVE) || opt(sock, IPPROTO_TCP, TCP_KEEPIDLE) != 77 ||
	    opt(sock, IPPROTO_TCP, TCP_KEEPINTVL) != 9 || opt(sock, IPPROTO_TCP, TCP_KEEPCNT) != 4)
		zdtm_fail("child: keepalive settings lost");
	if (opt(sock, IPPROTO_TCP, TCP_USER_TIMEOUT) != 12345 || !opt(sock, SOL_SOCKET, SO_REUSEADDR))
		zdtm_fail("child: TCP_USER_TIMEOUT or SO_REUSEADDR lost");
	zdtm_recv_pattern(sock, DOWN, 2, "child, queued");
	if (!half)
		send_all(sock, BULK, 3, "child, bulk");
	zdtm_recv_pattern(sock, BULK, 4, "child, bulk");
	if (half && send(sock, "x", 1, MSG_NOSIGNAL) != -1)
		zdtm_fail("child: a write after shutdown(SHUT_WR) succeeded");
	if (recv(sock, &c, 1, 0) != 0)
		zdtm_fail("child: no end of file after the parent closed");
	_exit(0);
}

int main(int argc, char **argv)
{
	int six, half, lst, sock, cl, go[2], status, on = 1, idle = 77, intvl = 9, cnt = 4;
	int user_timeout = 12345, rd, rd_peer;
	char ten[64];
	struct sockaddr_storage ss = { 0 };
	socklen_t len;
	char c;
	pid_t pid;

	if (argc < 3 || (strcmp(argv[2], "4") && strcmp(argv[2], "6") && strcmp(argv[2], "half")))
		zdtm_fail("usage: socket_tcp DIR 4|6|half [MiB]");
	if (argc > 3) {
		size_t bytes = (size_t)atoi(argv[3]) << 20;
		char *mem = malloc(bytes);

		if (!mem)
			zdtm_fail("malloc: %s", strerror(errno));
		for (size_t i = 0; i < bytes; i++)
			mem[i] = (char)(i * 13 + 1);
	}
	six = !strcmp(argv[2], "6");
	half = !strcmp(argv[2], "half");
	zdtm_init();
	if (six) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		a->sin6_addr = in6addr_loopback;
		len = sizeof *a;
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		len = sizeof *a;
	}
	lst = socket(ss.ss_family, SOCK_STREAM, 0);
	if (lst < 0 || bind(lst, (struct sockaddr *)&ss, len) || listen(lst, 1) ||
	    getsockname(lst, (struct sockaddr *)&ss, &len) || pipe(go))
		zdtm_fail("listening: %s", strerror(errno));
	rd = socket(ss.ss_family, SOCK_STREAM, 0);
	if (rd < 0 || connect(rd, (struct sockaddr *)&ss, len))
		zdtm_fail("connecting to itself: %s", strerror(errno));
	rd_peer = accept(lst, NULL, NULL);
	if (rd_peer < 0 || shutdown(rd, SHUT_RD) || send(rd_peer, "0123456789", 10, 0) != 10)
		zdtm_fail("the shut-down connection: %s", strerror(errno));
	pid = fork();
	if (pid < 0)
		zdtm_fail("fork: %s", strerror(errno));
	if (pid == 0) {
		close(lst);
		close(rd);
		close(rd_peer);
		close(go[1]);
		cl = socket(ss.ss_family, SOCK_STREAM, 0);
		if (cl < 0 || setsockopt(cl, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) ||
		    connect(cl, (struct sockaddr *)&ss, len) ||
		    setsockopt(cl, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout,
			       sizeof user_timeout) ||
		    setsockopt(cl, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on) ||
		    setsockopt(cl, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle) ||
		    setsockopt(cl, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl) ||
		    setsockopt(cl, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt))
			zdtm_fail("child: connect: %s", strerror(errno));
		child(cl, go[0], half);
	}
	close(go[0]);
	sock = accept(lst, NULL, NULL);
	if (sock < 0 || setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on))
		zdtm_fail("accept: %s", strerror(errno));
	close(lst);
	send_all(sock, DOWN, 2, "parent, queued");
	/* The child's bytes (and FIN) have arrived before READY. */
	for (int i = 0; i < 2000; i++) {
		int n = 0;
		struct tcp_info ti;
		socklen_t tl = sizeof ti;

		if (getsockopt(sock, IPPROTO_TCP, TCP_INFO, &ti, &tl))
			zdtm_fail("TCP_INFO: %s", strerror(errno));
		int m = 0;

		if (ioctl(sock, FIONREAD, &n) == 0 && n == UP && ioctl(rd, FIONREAD, &m) == 0 &&
		    m == 10 &&
		    (!half || ti.tcpi_state == TCP_CLOSE_WAIT))
			break;
		zdtm_sleep_ms(1);
	}
	zdtm_ready();
	zdtm_wait_stop();

	if (!opt(sock, IPPROTO_TCP, TCP_NODELAY) || opt(sock, SOL_SOCKET, SO_REUSEADDR))
		zdtm_fail("parent: TCP_NODELAY lost or SO_REUSEADDR gained");
	if (recv(rd, ten, sizeof ten, MSG_DONTWAIT) != 10 || memcmp(ten, "0123456789", 10))
		zdtm_fail("the shut-down connection lost its queued bytes");
	if (recv(rd, ten, sizeof ten, MSG_DONTWAIT) != 0)
		zdtm_fail("the connection shut down for reading does not end with end of file (%s)",
			  strerror(errno));
	if (write(go[1], "g", 1) != 1)
		zdtm_fail("waking the child: %s", strerror(errno));
	zdtm_recv_pattern(sock, UP, 1, "parent, queued");
	if (half) {
		if (recv(sock, &c, 1, 0) != 0)
			zdtm_fail("parent: no end of file after the child's shutdown");
	} else {
		zdtm_recv_pattern(sock, BULK, 3, "parent, bulk");
	}
	send_all(sock, BULK, 4, "parent, bulk");
	close(sock);
	if (waitpid(pid, &status, 0) != pid)
		zdtm_fail("waitpid: %s", strerror(errno));
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		zdtm_fail("the child ended with status %#x", status);
	zdtm_pass();
}
