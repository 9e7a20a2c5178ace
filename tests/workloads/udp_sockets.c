/*
 * Connected and shut down UDP sockets on loopback, with datagrams queued:
 * - a and b (127.0.0.1) connected to each other; b sent "one" and "two!"
 *   to a, a sent "hello" to b, none read yet;
 * - c and d (::1), c connected to d, d not connected; d sent "six" to c;
 * - e (127.0.0.1, not connected, SO_BROADCAST) holds a datagram from a socket that was
 *   closed before the checkpoint (its sender is outside the tree), then
 *   one from w, bound to any address (so it arrives from 127.0.0.1 on w's
 *   port);
 * - u, neither bound nor connected;
 * - l1 and l2, UDP-Lite (as CRIU's socket_udplite), connected to each
 *   other, l2 sent "lite" to l1;
 * - f and g (127.0.0.10) connected to each other, f shut down for writing
 *   and g for reading (as CRIU's socket_udp_shutdown); h not connected and
 *   shut down both ways.
 * At SIGTERM: each socket is connected to the same peer, reads its
 * datagrams in order with the right sender, the pairs still talk, f
 * cannot send (EPIPE), g and h report their shutdowns through poll().
 */
#include "zdtm.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

static int udp_of(int family, const char *ip, struct sockaddr_storage *at, int protocol)
{
	int s = socket(family, SOCK_DGRAM, protocol);
	socklen_t len = sizeof *at;

	memset(at, 0, sizeof *at);
	if (family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)at;

		a->sin_family = AF_INET;
		inet_pton(AF_INET, ip, &a->sin_addr);
	} else {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)at;

		a->sin6_family = AF_INET6;
		inet_pton(AF_INET6, ip, &a->sin6_addr);
	}
	if (s < 0 || bind(s, (struct sockaddr *)at, sizeof *at) ||
	    getsockname(s, (struct sockaddr *)at, &len))
		zdtm_fail("udp socket on %s: %s", ip, strerror(errno));
	return s;
}

static int udp(int family, const char *ip, struct sockaddr_storage *at)
{
	return udp_of(family, ip, at, 0);
}

static socklen_t len_of(const struct sockaddr_storage *a)
{
	return a->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
}

static void link_to(int s, const struct sockaddr_storage *to, const char *what)
{
	if (connect(s, (const struct sockaddr *)to, len_of(to)))
		zdtm_fail("%s: connect: %s", what, strerror(errno));
}

static void send_to(int s, const char *msg, const struct sockaddr_storage *to, const char *what)
{
	if (sendto(s, msg, strlen(msg), 0, (const struct sockaddr *)to, len_of(to)) !=
	    (ssize_t)strlen(msg))
		zdtm_fail("%s: sendto: %s", what, strerror(errno));
}

/* Reads one datagram from s at once: it must be msg, sent from `from`. */
static void expect(int s, const char *msg, const struct sockaddr_storage *from, const char *what)
{
	char buf[64];
	struct sockaddr_storage src;
	socklen_t len = sizeof src;
	ssize_t n = -1;

	for (int i = 0; i < 1000 && n < 0; i++) {
		n = recvfrom(s, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&src, &len);
		if (n < 0 && errno != EAGAIN)
			zdtm_fail("%s: recvfrom: %s", what, strerror(errno));
		if (n < 0)
			zdtm_sleep_ms(1);
	}
	if (n != (ssize_t)strlen(msg) || memcmp(buf, msg, (size_t)n))
		zdtm_fail("%s: expected \"%s\", got %zd bytes", what, msg, n);
	if (len != len_of(from) || memcmp(&src, from, len))
		zdtm_fail("%s: \"%s\" comes from another sender", what, msg);
}

static void empty(int s, const char *what)
{
	char c;

	if (recv(s, &c, 1, MSG_DONTWAIT) != -1 || errno != EAGAIN)
		zdtm_fail("%s: holds a datagram nobody sent", what);
}

static void peer_is(int s, const struct sockaddr_storage *want, const char *what)
{
	struct sockaddr_storage p;
	socklen_t len = sizeof p;

	if (getpeername(s, (struct sockaddr *)&p, &len))
		zdtm_fail("%s: not connected: %s", what, strerror(errno));
	if (len != len_of(want) || memcmp(&p, want, len))
		zdtm_fail("%s: connected to another address", what);
}

static short revents(int s)
{
	struct pollfd p = { .fd = s, .events = POLLIN | POLLOUT | POLLRDHUP };

	if (poll(&p, 1, 0) < 0)
		zdtm_fail("poll: %s", strerror(errno));
	return p.revents;
}

int main(void)
{
	struct sockaddr_storage a_at, b_at, c_at, d_at, e_at, x_at, f_at, g_at, h_at, w_at, w_from;
	int a, b, c, d, e, x, f, g, h, w, u, l1, l2, proto;
	struct sockaddr_storage l1_at, l2_at;
	socklen_t proto_len = sizeof proto;
	struct sockaddr_in u_at;
	socklen_t u_len = sizeof u_at;

	zdtm_init();
	a = udp(AF_INET, "127.0.0.1", &a_at);
	b = udp(AF_INET, "127.0.0.1", &b_at);
	link_to(a, &b_at, "a");
	link_to(b, &a_at, "b");
	send_to(b, "one", &a_at, "b");
	send_to(b, "two!", &a_at, "b");
	send_to(a, "hello", &b_at, "a");

	c = udp(AF_INET6, "::1", &c_at);
	d = udp(AF_INET6, "::1", &d_at);
	link_to(c, &d_at, "c");
	send_to(d, "six", &c_at, "d");

	e = udp(AF_INET, "127.0.0.1", &e_at);
	if (setsockopt(e, SOL_SOCKET, SO_BROADCAST, &(int){ 1 }, sizeof(int)))
		zdtm_fail("SO_BROADCAST: %s", strerror(errno));
	x = udp(AF_INET, "127.0.0.1", &x_at);
	send_to(x, "ext", &e_at, "x");
	close(x);
	w = udp(AF_INET, "0.0.0.0", &w_at);
	send_to(w, "wild", &e_at, "w");
	w_from = w_at;
	inet_pton(AF_INET, "127.0.0.1", &((struct sockaddr_in *)&w_from)->sin_addr);

	f = udp(AF_INET, "127.0.0.10", &f_at);
	g = udp(AF_INET, "127.0.0.10", &g_at);
	link_to(f, &g_at, "f");
	link_to(g, &f_at, "g");
	if (shutdown(f, SHUT_WR) || shutdown(g, SHUT_RD))
		zdtm_fail("shutdown: %s", strerror(errno));
	h = udp(AF_INET, "127.0.0.1", &h_at);
	u = socket(AF_INET, SOCK_DGRAM, 0);
	if (u < 0)
		zdtm_fail("socket: %s", strerror(errno));
	l1 = udp_of(AF_INET, "127.0.0.1", &l1_at, IPPROTO_UDPLITE);
	l2 = udp_of(AF_INET, "127.0.0.1", &l2_at, IPPROTO_UDPLITE);
	link_to(l1, &l2_at, "l1");
	link_to(l2, &l1_at, "l2");
	send_to(l2, "lite", &l1_at, "l2");
	if (shutdown(h, SHUT_RDWR) != -1 || errno != ENOTCONN)
		zdtm_fail("shutdown of an unconnected socket: %s", strerror(errno));
	/* Let loopback deliver everything before the checkpoint. */
	zdtm_sleep_ms(50);
	zdtm_ready();
	zdtm_wait_stop();

	peer_is(a, &b_at, "a");
	peer_is(b, &a_at, "b");
	peer_is(c, &d_at, "c");
	peer_is(f, &g_at, "f");
	peer_is(g, &f_at, "g");
	expect(a, "one", &b_at, "a");
	expect(a, "two!", &b_at, "a");
	empty(a, "a");
	expect(b, "hello", &a_at, "b");
	empty(b, "b");
	expect(c, "six", &d_at, "c");
	empty(c, "c");
	empty(d, "d");
	expect(e, "ext", &x_at, "e");
	expect(e, "wild", &w_from, "e");
	empty(e, "e");
	send_to(a, "again", &b_at, "a after restore");
	expect(b, "again", &a_at, "b after restore");
	send_to(d, "more", &c_at, "d after restore");
	expect(c, "more", &d_at, "c after restore");

	if (send(f, "w", 1, MSG_NOSIGNAL) != -1 || errno != EPIPE)
		zdtm_fail("f sends although shut down for writing");
	if (revents(f) & POLLRDHUP)
		zdtm_fail("f is shut down for reading too");
	if (!(revents(g) & POLLRDHUP))
		zdtm_fail("g is no longer shut down for reading");
	send_to(g, "gf", &f_at, "g");
	expect(f, "gf", &g_at, "f");
	if ((revents(h) & (POLLHUP | POLLRDHUP)) != (POLLHUP | POLLRDHUP))
		zdtm_fail("h is no longer shut down both ways");
	if (getsockname(u, (struct sockaddr *)&u_at, &u_len) || u_at.sin_port != 0)
		zdtm_fail("u got bound");
	send_to(u, "unbound", &e_at, "u");
	if (getsockname(u, (struct sockaddr *)&u_at, &u_len) || u_at.sin_port == 0)
		zdtm_fail("u was not bound by its first send");
	inet_pton(AF_INET, "127.0.0.1", &u_at.sin_addr);
	expect(e, "unbound", (struct sockaddr_storage *)&u_at, "e from u");
	if (getsockopt(l1, SOL_SOCKET, SO_PROTOCOL, &proto, &proto_len) || proto != IPPROTO_UDPLITE)
		zdtm_fail("l1 is no longer UDP-Lite");
	proto_len = sizeof proto;
	if (getsockopt(e, SOL_SOCKET, SO_BROADCAST, &proto, &proto_len) || !proto)
		zdtm_fail("e lost SO_BROADCAST");
	proto_len = sizeof proto;
	if (getsockopt(a, SOL_SOCKET, SO_BROADCAST, &proto, &proto_len) || proto)
		zdtm_fail("a got SO_BROADCAST");
	peer_is(l1, &l2_at, "l1");
	expect(l1, "lite", &l2_at, "l1");
	empty(l1, "l1");
	send_to(l1, "back", &l2_at, "l1");
	expect(l2, "back", &l1_at, "l2");
	zdtm_pass();
}
