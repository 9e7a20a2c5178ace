/*
 * TCP listeners whose port is shared, restored where binding it needs the
 * reuse flags the sockets had when they were bound (CRIU's
 * socket-tcp-reuseport case and a TIME_WAIT one):
 * - a listener on 127.0.0.1 bound with SO_REUSEADDR, which it turned off
 *   after accepting a connection; that connection is closed from the
 *   listener's side first, so its TIME_WAIT (which keeps the SO_REUSEADDR
 *   it was accepted with) holds the port at the checkpoint;
 * - two listeners on one port bound with SO_REUSEPORT, the first of which
 *   turned it off since.
 * At SIGTERM: each listener keeps its port and its reuse flags and
 * accepts a new connection.
 */
#include "zdtm.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

static int opt(int fd, int name)
{
	int v = -1;
	socklen_t len = sizeof v;

	if (getsockopt(fd, SOL_SOCKET, name, &v, &len))
		zdtm_fail("getsockopt %d: %s", name, strerror(errno));
	return v;
}

static void set(int fd, int name, int v, const char *what)
{
	if (setsockopt(fd, SOL_SOCKET, name, &v, sizeof v))
		zdtm_fail("%s: setsockopt %d: %s", what, name, strerror(errno));
}

/* A listener on 127.0.0.1:port (0: any) with SO_REUSEADDR or SO_REUSEPORT
 * (`reuse`) on. */
static int listener(int reuse, struct sockaddr_in *at, const char *what)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	socklen_t len = sizeof *at;

	if (fd < 0)
		zdtm_fail("%s: socket: %s", what, strerror(errno));
	set(fd, reuse, 1, what);
	if (bind(fd, (struct sockaddr *)at, sizeof *at) || listen(fd, 8) ||
	    getsockname(fd, (struct sockaddr *)at, &len))
		zdtm_fail("%s: %s", what, strerror(errno));
	return fd;
}

static int connect_to(struct sockaddr_in *at, const char *what)
{
	int cl = socket(AF_INET, SOCK_STREAM, 0);

	if (cl < 0 || connect(cl, (struct sockaddr *)at, sizeof *at))
		zdtm_fail("%s: connect: %s", what, strerror(errno));
	return cl;
}

/* Whether a TCP socket of port `port` is in TIME_WAIT (/proc/net/tcp). */
static int time_wait_on(int port)
{
	static char buf[1 << 22];
	char *line;
	unsigned lport, st;

	if (zdtm_read_file("/proc/net/tcp", buf, sizeof buf) < 0)
		zdtm_fail("reading /proc/net/tcp: %s", strerror(errno));
	for (line = strchr(buf, '\n'); line; line = strchr(line + 1, '\n'))
		if (sscanf(line + 1, " %*u: %*x:%x %*x:%*x %x", &lport, &st) == 2 &&
		    (int)lport == port && st == 6)
			return 1;
	return 0;
}

/* Connects to `at` and accepts the connection on one of `fds`, exchanging
 * a byte. */
static void accepts(int *fds, int n, struct sockaddr_in *at, const char *what)
{
	struct pollfd p[2];
	int cl = connect_to(at, what), acc = -1;
	char c = 0;

	for (int i = 0; i < n; i++)
		p[i] = (struct pollfd){ .fd = fds[i], .events = POLLIN };
	if (poll(p, (nfds_t)n, 5000) <= 0)
		zdtm_fail("%s: no listener has the connection", what);
	for (int i = 0; i < n && acc < 0; i++)
		if (p[i].revents & POLLIN)
			acc = accept(fds[i], NULL, NULL);
	if (acc < 0)
		zdtm_fail("%s: accept: %s", what, strerror(errno));
	if (send(cl, "t", 1, 0) != 1 || recv(acc, &c, 1, 0) != 1 || c != 't')
		zdtm_fail("%s: the accepted connection carries no data", what);
	close(acc);
	close(cl);
}

int main(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET }, p = { .sin_family = AF_INET }, now;
	socklen_t len = sizeof now;
	int l, acc, cl, p1, p2, pair[2];
	char c;

	zdtm_init();
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	p.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	l = listener(SO_REUSEADDR, &a, "listener");
	cl = connect_to(&a, "listener");
	acc = accept(l, NULL, NULL);
	if (acc < 0)
		zdtm_fail("accept: %s", strerror(errno));
	set(l, SO_REUSEADDR, 0, "listener");
	close(acc);
	if (recv(cl, &c, 1, 0) != 0)
		zdtm_fail("the client did not read the listener side's close");
	close(cl);
	for (int i = 0; i < 1000 && !time_wait_on(ntohs(a.sin_port)); i++)
		zdtm_sleep_ms(1);
	if (!time_wait_on(ntohs(a.sin_port)))
		zdtm_fail("no TIME_WAIT holds the listener's port");

	p1 = listener(SO_REUSEPORT, &p, "reuseport 1");
	p2 = listener(SO_REUSEPORT, &p, "reuseport 2");
	set(p1, SO_REUSEPORT, 0, "reuseport 1");
	zdtm_ready();
	zdtm_wait_stop();

	if (getsockname(l, (struct sockaddr *)&now, &len) || memcmp(&now, &a, sizeof a))
		zdtm_fail("the listener moved to another address or port");
	if (!opt(l, SO_ACCEPTCONN) || opt(l, SO_REUSEADDR) || opt(l, SO_REUSEPORT))
		zdtm_fail("the listener no longer listens or its reuse flags changed");
	for (int i = 0; i < 2; i++) {
		int fd = i ? p2 : p1;

		len = sizeof now;
		if (getsockname(fd, (struct sockaddr *)&now, &len) || memcmp(&now, &p, sizeof p))
			zdtm_fail("reuseport listener %d moved to another address or port", i + 1);
		if (!opt(fd, SO_ACCEPTCONN) || opt(fd, SO_REUSEADDR) || opt(fd, SO_REUSEPORT) != i)
			zdtm_fail("reuseport listener %d no longer listens or its flags changed",
				  i + 1);
	}
	accepts(&l, 1, &a, "listener");
	pair[0] = p1;
	pair[1] = p2;
	accepts(pair, 2, &p, "reuseport listeners");
	zdtm_pass();
}
