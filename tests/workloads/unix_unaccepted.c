/*
 * Unix connections by name inside the tree: two stream connections and a
 * seqpacket one queued on their listeners (DIR/st.sock, DIR/sq.sock), not
 * accept()ed; two datagram clients connected to one server socket
 * (DIR/dg.sock, which also sent a datagram to the bound client
 * DIR/d1.sock); a datagram socket connected to itself (DIR/self.sock)
 * with a datagram queued. At SIGTERM: accept() returns the queued
 * connections in order, each still connected to its client, and nothing
 * more; the datagram clients still reach their server and keep its name
 * as their peer, the queued datagrams come out.
 */
#include "zdtm.h"
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>

static struct sockaddr_un named(const char *dir, const char *name)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };

	snprintf(a.sun_path, sizeof a.sun_path, "%s/%s", dir, name);
	return a;
}

static int sock_at(int type, const struct sockaddr_un *bind_to, const struct sockaddr_un *conn)
{
	int s = socket(AF_UNIX, type, 0);

	if (s < 0)
		zdtm_fail("socket: %s", strerror(errno));
	if (bind_to && bind(s, (const struct sockaddr *)bind_to, sizeof *bind_to))
		zdtm_fail("bind %s: %s", bind_to->sun_path, strerror(errno));
	if (conn && connect(s, (const struct sockaddr *)conn, sizeof *conn))
		zdtm_fail("connect %s: %s", conn->sun_path, strerror(errno));
	return s;
}

static void expect(int fd, const char *want, const char *what)
{
	char buf[64];
	ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);

	if (n != (ssize_t)strlen(want) || memcmp(buf, want, (size_t)n))
		zdtm_fail("%s: got %zd bytes (%s) instead of \"%s\"", what, n,
			  n < 0 ? strerror(errno) : "other bytes", want);
}

/* Accepts the next queued connection of `lst`, which must be `client`'s. */
static void accept_from(int lst, int client, const char *tag)
{
	int acc = accept4(lst, NULL, NULL, SOCK_NONBLOCK);

	if (acc < 0)
		zdtm_fail("accept (%s): %s", tag, strerror(errno));
	if (send(client, tag, strlen(tag), 0) != (ssize_t)strlen(tag))
		zdtm_fail("send (%s): %s", tag, strerror(errno));
	expect(acc, tag, "the accepted connection");
	if (send(acc, "back", 4, 0) != 4)
		zdtm_fail("send back (%s): %s", tag, strerror(errno));
	expect(client, "back", "the client");
	close(acc);
}

static void none_queued(int lst, const char *what)
{
	if (fcntl(lst, F_SETFL, O_NONBLOCK))
		zdtm_fail("F_SETFL: %s", strerror(errno));
	if (accept4(lst, NULL, NULL, SOCK_NONBLOCK) != -1 || errno != EAGAIN)
		zdtm_fail("%s: more connections queued than were made", what);
}

int main(int argc, char **argv)
{
	struct sockaddr_un st_a, sq_a, dg_a, d1_a, self_a, got;
	socklen_t len = sizeof got;
	int st, c1, c2, sq, c3, srv, d1, d2, self;

	zdtm_init();
	if (argc < 2)
		zdtm_fail("usage: unix_unaccepted DIR");
	st_a = named(argv[1], "st.sock");
	sq_a = named(argv[1], "sq.sock");
	dg_a = named(argv[1], "dg.sock");
	d1_a = named(argv[1], "d1.sock");
	self_a = named(argv[1], "self.sock");

	st = sock_at(SOCK_STREAM, &st_a, NULL);
	sq = sock_at(SOCK_SEQPACKET, &sq_a, NULL);
	if (listen(st, 4) || listen(sq, 4))
		zdtm_fail("listen: %s", strerror(errno));
	c1 = sock_at(SOCK_STREAM, NULL, &st_a);
	c2 = sock_at(SOCK_STREAM, NULL, &st_a);
	c3 = sock_at(SOCK_SEQPACKET, NULL, &sq_a);
	fcntl(c2, F_SETFL, O_NONBLOCK);

	srv = sock_at(SOCK_DGRAM, &dg_a, NULL);
	d1 = sock_at(SOCK_DGRAM, &d1_a, &dg_a);
	d2 = sock_at(SOCK_DGRAM, NULL, &dg_a);
	if (sendto(srv, "to-d1", 5, 0, (struct sockaddr *)&d1_a, sizeof d1_a) != 5)
		zdtm_fail("sendto d1: %s", strerror(errno));
	self = sock_at(SOCK_DGRAM, &self_a, &self_a);
	if (send(self, "me", 2, 0) != 2)
		zdtm_fail("send to itself: %s", strerror(errno));
	zdtm_ready();
	zdtm_wait_stop();

	accept_from(st, c1, "first");
	accept_from(st, c2, "second");
	none_queued(st, "stream");
	if (!(fcntl(c2, F_GETFL) & O_NONBLOCK) || (fcntl(c1, F_GETFL) & O_NONBLOCK))
		zdtm_fail("O_NONBLOCK moved between the clients");
	accept_from(sq, c3, "seqpacket");
	none_queued(sq, "seqpacket");

	expect(d1, "to-d1", "d1's queued datagram");
	if (send(d1, "p", 1, 0) != 1 || send(d2, "q", 1, 0) != 1)
		zdtm_fail("the clients cannot send: %s", strerror(errno));
	expect(srv, "p", "the server from d1");
	expect(srv, "q", "the server from d2");
	if (getpeername(d2, (struct sockaddr *)&got, &len) || strcmp(got.sun_path, dg_a.sun_path))
		zdtm_fail("d2's peer is no longer %s", dg_a.sun_path);

	expect(self, "me", "the self-connected socket");
	if (send(self, "again", 5, 0) != 5)
		zdtm_fail("the self-connected socket cannot send: %s", strerror(errno));
	expect(self, "again", "the self-connected socket");
	zdtm_pass();
}
