/*
 * Empty messages queued on unix datagram and seqpacket sockets count as
 * messages: a datagram pair with "", "a", "", "" queued, a seqpacket pair
 * with "", "bb", "" queued, and a seqpacket connection accepted from a
 * listener on DIR/sq.sock with "" and "c" queued at the accepted end. At
 * SIGTERM each message comes out in order, empty ones as reads of 0
 * bytes, then nothing more; the seqpacket listener still accepts.
 */
#include "zdtm.h"
#include <sys/socket.h>
#include <sys/un.h>

static void queue(int fd, const char *const *msgs, int n)
{
	for (int i = 0; i < n; i++)
		if (send(fd, msgs[i], strlen(msgs[i]), 0) != (ssize_t)strlen(msgs[i]))
			zdtm_fail("send: %s", strerror(errno));
}

static void expect(int fd, const char *const *msgs, int n, const char *what)
{
	char buf[16];

	for (int i = 0; i < n; i++) {
		ssize_t got = recv(fd, buf, sizeof buf, MSG_DONTWAIT);

		if (got != (ssize_t)strlen(msgs[i]) || memcmp(buf, msgs[i], (size_t)got))
			zdtm_fail("%s: message %d: got %zd bytes (%s), not \"%s\"", what, i, got,
				  got < 0 ? strerror(errno) : "other bytes", msgs[i]);
	}
	if (recv(fd, buf, sizeof buf, MSG_DONTWAIT) != -1 || errno != EAGAIN)
		zdtm_fail("%s: more messages than were queued", what);
}

int main(int argc, char **argv)
{
	static const char *const dg_msgs[] = { "", "a", "", "" };
	static const char *const sq_msgs[] = { "", "bb", "" };
	static const char *const acc_msgs[] = { "", "c" };
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int dg[2], sq[2], lst, cl, acc, cl2, acc2;

	zdtm_init();
	if (argc < 2)
		zdtm_fail("usage: unix_empty_msgs DIR");
	if (socketpair(AF_UNIX, SOCK_DGRAM, 0, dg) || socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sq))
		zdtm_fail("socketpair: %s", strerror(errno));
	queue(dg[0], dg_msgs, 4);
	queue(sq[1], sq_msgs, 3);
	snprintf(addr.sun_path, sizeof addr.sun_path, "%s/sq.sock", argv[1]);
	lst = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	cl = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	if (lst < 0 || cl < 0 || bind(lst, (struct sockaddr *)&addr, sizeof addr) || listen(lst, 2) ||
	    connect(cl, (struct sockaddr *)&addr, sizeof addr))
		zdtm_fail("seqpacket listener %s: %s", addr.sun_path, strerror(errno));
	acc = accept(lst, NULL, NULL);
	if (acc < 0)
		zdtm_fail("accept: %s", strerror(errno));
	queue(cl, acc_msgs, 2);
	zdtm_ready();
	zdtm_wait_stop();

	expect(dg[1], dg_msgs, 4, "datagram");
	expect(sq[0], sq_msgs, 3, "seqpacket");
	expect(acc, acc_msgs, 2, "accepted seqpacket");
	cl2 = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	if (cl2 < 0 || connect(cl2, (struct sockaddr *)&addr, sizeof addr))
		zdtm_fail("connecting to %s: %s", addr.sun_path, strerror(errno));
	acc2 = accept(lst, NULL, NULL);
	if (acc2 < 0 || send(cl2, "d", 1, 0) != 1)
		zdtm_fail("the listener no longer accepts: %s", strerror(errno));
	static const char *const d[] = { "d" };
	expect(acc2, d, 1, "new seqpacket connection");
	zdtm_pass();
}
