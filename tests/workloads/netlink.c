/*
 * Netlink sockets (as CRIU's sk-netlink), of protocol NETLINK_USERSOCK so
 * that the workload talks only to itself:
 * - s, raw, bound to port id getpid(), NETLINK_PKTINFO on, SO_RCVBUF set;
 * - b, raw, bound to group 5 with no port id (the kernel picks one), then
 *   joined to group 17 by NETLINK_ADD_MEMBERSHIP, NETLINK_NO_ENOBUFS on;
 * - c, raw, connected to s's port id and group 5 (given a port id by the
 *   kernel), NETLINK_BROADCAST_ERROR on;
 * - d, raw, neither bound nor connected, O_NONBLOCK, NETLINK_EXT_ACK on;
 * - g, datagram, joined to group 17 without binding (port id 0).
 * At SIGTERM: every port id, group list, destination, option and status
 * flag is as it was; c's message reaches s (unicast) and b (group 5), d's
 * message to s and group 17 reaches s, b and g.
 */
#include "zdtm.h"
#include <fcntl.h>
#include <linux/netlink.h>

#define GROUP_A 5
#define GROUP_B 17

struct want {
	const char *name;
	int sk;
	__u32 port, mask, dst_port, dst_mask, groups;
};

static int nl(int type)
{
	int s = socket(AF_NETLINK, type, NETLINK_USERSOCK);

	if (s < 0)
		zdtm_fail("netlink socket: %s", strerror(errno));
	return s;
}

static struct sockaddr_nl addr_of(__u32 port, __u32 mask)
{
	struct sockaddr_nl a;

	memset(&a, 0, sizeof a);
	a.nl_family = AF_NETLINK;
	a.nl_pid = port;
	a.nl_groups = mask;
	return a;
}

static void set(int s, int level, int opt, int val, const char *what)
{
	if (setsockopt(s, level, opt, &val, sizeof val))
		zdtm_fail("setting %s: %s", what, strerror(errno));
}

static int get(int s, int level, int opt)
{
	int val = -1;
	socklen_t len = sizeof val;

	if (getsockopt(s, level, opt, &val, &len))
		zdtm_fail("getsockopt %d/%d: %s", level, opt, strerror(errno));
	return val;
}

static void names(struct want *w)
{
	struct sockaddr_nl a;
	socklen_t len = sizeof a;
	__u32 groups = 0;

	if (getsockname(w->sk, (struct sockaddr *)&a, &len))
		zdtm_fail("getsockname of %s: %s", w->name, strerror(errno));
	w->port = a.nl_pid;
	w->mask = a.nl_groups;
	len = sizeof a;
	if (getpeername(w->sk, (struct sockaddr *)&a, &len))
		zdtm_fail("getpeername of %s: %s", w->name, strerror(errno));
	w->dst_port = a.nl_pid;
	w->dst_mask = a.nl_groups;
	len = sizeof groups;
	if (getsockopt(w->sk, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, &groups, &len))
		zdtm_fail("NETLINK_LIST_MEMBERSHIPS of %s: %s", w->name, strerror(errno));
	w->groups = groups;
}

static void expect(int s, const char *text, const char *what)
{
	char buf[256];
	struct nlmsghdr *h = (struct nlmsghdr *)buf;
	ssize_t n = recv(s, buf, sizeof buf, MSG_DONTWAIT);

	if (n < (ssize_t)NLMSG_LENGTH(strlen(text) + 1))
		zdtm_fail("%s: got %zd bytes (%s)", what, n, n < 0 ? strerror(errno) : "short");
	if (strcmp(NLMSG_DATA(h), text))
		zdtm_fail("%s: got \"%s\", not \"%s\"", what, (char *)NLMSG_DATA(h), text);
}

static void send_text(int s, __u32 port, __u32 mask, const char *text, const char *what)
{
	char buf[256];
	struct nlmsghdr *h = (struct nlmsghdr *)buf;
	struct sockaddr_nl to = addr_of(port, mask);
	size_t len = NLMSG_LENGTH(strlen(text) + 1);

	memset(buf, 0, sizeof buf);
	h->nlmsg_len = len;
	h->nlmsg_type = 0x1234;
	strcpy(NLMSG_DATA(h), text);
	if ((port ? sendto(s, buf, len, 0, (struct sockaddr *)&to, sizeof to)
		  : send(s, buf, len, 0)) != (ssize_t)len)
		zdtm_fail("%s: %s", what, strerror(errno));
}

int main(void)
{
	struct want w[5] = {
		{ .name = "s" }, { .name = "b" }, { .name = "c" }, { .name = "d" }, { .name = "g" },
	};
	struct sockaddr_nl a;
	int rcvbuf;

	zdtm_init();
	w[0].sk = nl(SOCK_RAW);
	a = addr_of(getpid(), 0);
	if (bind(w[0].sk, (struct sockaddr *)&a, sizeof a))
		zdtm_fail("bind s: %s", strerror(errno));
	set(w[0].sk, SOL_NETLINK, NETLINK_PKTINFO, 1, "NETLINK_PKTINFO");
	set(w[0].sk, SOL_SOCKET, SO_RCVBUF, 50000, "SO_RCVBUF");
	rcvbuf = get(w[0].sk, SOL_SOCKET, SO_RCVBUF);

	w[1].sk = nl(SOCK_RAW);
	a = addr_of(0, 1 << (GROUP_A - 1));
	if (bind(w[1].sk, (struct sockaddr *)&a, sizeof a))
		zdtm_fail("bind b: %s", strerror(errno));
	set(w[1].sk, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, GROUP_B, "b's group");
	set(w[1].sk, SOL_NETLINK, NETLINK_NO_ENOBUFS, 1, "NETLINK_NO_ENOBUFS");

	w[2].sk = nl(SOCK_RAW);
	a = addr_of(getpid(), 1 << (GROUP_A - 1));
	if (connect(w[2].sk, (struct sockaddr *)&a, sizeof a))
		zdtm_fail("connect c: %s", strerror(errno));
	set(w[2].sk, SOL_NETLINK, NETLINK_BROADCAST_ERROR, 1, "NETLINK_BROADCAST_ERROR");

	w[3].sk = nl(SOCK_RAW);
	if (fcntl(w[3].sk, F_SETFL, O_NONBLOCK))
		zdtm_fail("O_NONBLOCK: %s", strerror(errno));
	set(w[3].sk, SOL_NETLINK, NETLINK_EXT_ACK, 1, "NETLINK_EXT_ACK");

	w[4].sk = nl(SOCK_DGRAM);
	set(w[4].sk, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, GROUP_B, "g's group");

	for (int i = 0; i < 5; i++)
		names(&w[i]);
	if (w[0].port != (__u32)getpid() || w[1].port == 0 || w[2].port == 0 || w[3].port != 0 ||
	    w[4].port != 0)
		zdtm_fail("unexpected port ids %u %u %u %u %u before the checkpoint", w[0].port,
			  w[1].port, w[2].port, w[3].port, w[4].port);
	zdtm_ready();
	zdtm_wait_stop();

	for (int i = 0; i < 5; i++) {
		struct want now = w[i];

		names(&now);
		if (memcmp(&now, &w[i], sizeof now))
			zdtm_fail("%s changed: port %u -> %u, mask %#x -> %#x, to %u/%#x -> %u/%#x, groups %#x -> %#x",
				  w[i].name, w[i].port, now.port, w[i].mask, now.mask, w[i].dst_port,
				  w[i].dst_mask, now.dst_port, now.dst_mask, w[i].groups, now.groups);
	}
	if (get(w[0].sk, SOL_NETLINK, NETLINK_PKTINFO) != 1 ||
	    get(w[1].sk, SOL_NETLINK, NETLINK_NO_ENOBUFS) != 1 ||
	    get(w[2].sk, SOL_NETLINK, NETLINK_BROADCAST_ERROR) != 1 ||
	    get(w[3].sk, SOL_NETLINK, NETLINK_EXT_ACK) != 1 ||
	    get(w[1].sk, SOL_NETLINK, NETLINK_PKTINFO) != 0)
		zdtm_fail("a SOL_NETLINK option changed");
	if (get(w[0].sk, SOL_SOCKET, SO_RCVBUF) != rcvbuf)
		zdtm_fail("SO_RCVBUF of s changed: %d -> %d", rcvbuf,
			  get(w[0].sk, SOL_SOCKET, SO_RCVBUF));
	if (!(fcntl(w[3].sk, F_GETFL) & O_NONBLOCK) || (fcntl(w[0].sk, F_GETFL) & O_NONBLOCK))
		zdtm_fail("O_NONBLOCK changed");

	send_text(w[2].sk, 0, 0, "to s and group 5", "c's send");
	expect(w[0].sk, "to s and group 5", "s, from c");
	expect(w[1].sk, "to s and group 5", "b, from c (group 5)");
	send_text(w[3].sk, getpid(), 1 << (GROUP_B - 1), "to group 17", "d's send");
	expect(w[0].sk, "to group 17", "s, from d");
	expect(w[1].sk, "to group 17", "b, from d (group 17)");
	expect(w[4].sk, "to group 17", "g, from d (group 17)");
	zdtm_pass();
}
