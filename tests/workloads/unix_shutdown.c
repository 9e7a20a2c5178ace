/*
 * One-way and two-way shutdowns of unix sockets (as CRIU's sockets01):
 * stream pairs with one end shut for reading, one shut both ways, one
 * shut for writing after sending "xyz"; datagram pairs with one end shut
 * for reading, one both ways, one for writing after sending a datagram;
 * a seqpacket pair with one end shut for writing after sending a message.
 * At SIGTERM each direction works or fails exactly as before.
 */
#include "zdtm.h"
#include <sys/socket.h>

#define OK 1
#define SHUT 0

/* A send from a to b works (and b reads it) or fails with EPIPE. */
static void direction(int a, int b, int works, const char *what)
{
	char buf[8];
	ssize_t n = send(a, "m", 1, MSG_NOSIGNAL | MSG_DONTWAIT);

	if (works) {
		if (n != 1 || recv(b, buf, sizeof buf, MSG_DONTWAIT) != 1 || buf[0] != 'm')
			zdtm_fail("%s: no longer carries data (%s)", what, strerror(errno));
	} else if (n != -1 || errno != EPIPE) {
		zdtm_fail("%s: a send did not fail with EPIPE (%zd, %s)", what, n,
			  strerror(errno));
	}
}

static void expect(int fd, const char *want, const char *what)
{
	char buf[16];
	ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);

	if (n != (ssize_t)strlen(want) || memcmp(buf, want, (size_t)n))
		zdtm_fail("%s: got %zd bytes (%s), not \"%s\"", what, n,
			  n < 0 ? strerror(errno) : "other bytes", want);
}

static void pair(int type, int sv[2])
{
	if (socketpair(AF_UNIX, type, 0, sv))
		zdtm_fail("socketpair: %s", strerror(errno));
}

int main(int argc, char **argv)
{
	int spu[2], spb[2], spw[2], dpu[2], dpb[2], dpd[2], sqw[2];

	(void)argc;
	(void)argv;
	zdtm_init();
	pair(SOCK_STREAM, spu);
	pair(SOCK_STREAM, spb);
	pair(SOCK_STREAM, spw);
	pair(SOCK_DGRAM, dpu);
	pair(SOCK_DGRAM, dpb);
	pair(SOCK_DGRAM, dpd);
	pair(SOCK_SEQPACKET, sqw);
	if (send(spw[0], "xyz", 3, 0) != 3 || send(dpd[0], "dgram", 5, 0) != 5 ||
	    send(sqw[0], "seq", 3, 0) != 3)
		zdtm_fail("send: %s", strerror(errno));
	if (shutdown(spu[0], SHUT_RD) || shutdown(spb[0], SHUT_RDWR) || shutdown(spw[0], SHUT_WR) ||
	    shutdown(dpu[0], SHUT_RD) || shutdown(dpb[0], SHUT_RDWR) || shutdown(dpd[0], SHUT_WR) ||
	    shutdown(sqw[0], SHUT_WR))
		zdtm_fail("shutdown: %s", strerror(errno));
	zdtm_ready();
	zdtm_wait_stop();

	direction(spu[0], spu[1], OK, "stream, towards the end shut for reading's peer");
	direction(spu[1], spu[0], SHUT, "stream, towards the end shut for reading");
	direction(spb[0], spb[1], SHUT, "stream shut both ways");
	direction(spb[1], spb[0], SHUT, "stream shut both ways, back");
	expect(spw[1], "xyz", "stream shut for writing");
	zdtm_expect_eof(spw[1], "stream shut for writing");
	direction(spw[0], spw[1], SHUT, "stream shut for writing");
	direction(spw[1], spw[0], OK, "stream shut for writing, back");

	direction(dpu[0], dpu[1], OK, "datagram, from the end shut for reading");
	direction(dpu[1], dpu[0], SHUT, "datagram, towards the end shut for reading");
	direction(dpb[0], dpb[1], SHUT, "datagram shut both ways");
	direction(dpb[1], dpb[0], SHUT, "datagram shut both ways, back");
	expect(dpd[1], "dgram", "datagram shut for writing");
	direction(dpd[0], dpd[1], SHUT, "datagram shut for writing");

	expect(sqw[1], "seq", "seqpacket shut for writing");
	zdtm_expect_eof(sqw[1], "seqpacket shut for writing");
	direction(sqw[0], sqw[1], SHUT, "seqpacket shut for writing");
	direction(sqw[1], sqw[0], OK, "seqpacket shut for writing, back");
	zdtm_pass();
}
