/*
 * Packet sockets (as CRIU's packet_sock and packet_sock_spkt), on lo:
 * - r, SOCK_RAW of protocol 0, TPACKET_V2, PACKET_AUXDATA on, an RX ring
 *   configured (not mapped), lo in promiscuous mode through it;
 * - d, SOCK_DGRAM of ETH_P_IP bound to lo, PACKET_RESERVE 24,
 *   PACKET_ORIGDEV on, a unicast membership, a TX ring, in a hash fanout
 *   group with e (the same, without the rest);
 * - s, SOCK_PACKET of ETH_P_ALL bound to device "lo"; u, SOCK_PACKET not
 *   bound.
 * At SIGTERM: every name, option and fanout group is as it was, the
 *   memberships are there (lo is promiscuous) and can be dropped, the rings are there
 *   (setting one again is refused with EBUSY), and a UDP datagram sent on
 *   lo reaches d or e.
 */
#include "zdtm.h"
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <net/if.h>
#include <linux/if_packet.h>
#include <netinet/in.h>
#include <poll.h>

enum { R, D, E, S, U, N };
static const char *names[N] = { "r", "d", "e", "s", "u" };

static int get(int s, int opt)
{
	int val = -1;
	socklen_t len = sizeof val;

	if (getsockopt(s, SOL_PACKET, opt, &val, &len))
		zdtm_fail("getsockopt %d: %s", opt, strerror(errno));
	return val;
}

static void set(int s, int opt, const void *val, socklen_t len, const char *what)
{
	if (setsockopt(s, SOL_PACKET, opt, val, len))
		zdtm_fail("setting %s: %s", what, strerror(errno));
}

static void set_int(int s, int opt, int val, const char *what)
{
	set(s, opt, &val, sizeof val, what);
}

static int packet(int type, int proto)
{
	int s = socket(AF_PACKET, type, htons(proto));

	if (s < 0)
		zdtm_fail("packet socket: %s", strerror(errno));
	return s;
}

static void bind_lo(int s)
{
	struct sockaddr_ll a;

	memset(&a, 0, sizeof a);
	a.sll_family = AF_PACKET;
	a.sll_ifindex = 1;
	if (bind(s, (struct sockaddr *)&a, sizeof a))
		zdtm_fail("bind to lo: %s", strerror(errno));
}

static struct packet_mreq mreq_of(int type)
{
	struct packet_mreq m;

	memset(&m, 0, sizeof m);
	m.mr_ifindex = 1;
	m.mr_type = type;
	m.mr_alen = type == PACKET_MR_UNICAST ? 6 : 0;
	return m;
}

int main(void)
{
	int sk[N], fanout, got;
	struct sockaddr_storage before[N], after;
	socklen_t len;
	struct tpacket_req ring = { 4096, 1, 1024, 4 };
	struct packet_mreq promisc = mreq_of(PACKET_MR_PROMISC), ucast = mreq_of(PACKET_MR_UNICAST);
	struct sockaddr spkt;
	char flags[32] = "";

	zdtm_init();
	sk[R] = packet(SOCK_RAW, 0);
	set_int(sk[R], PACKET_VERSION, TPACKET_V2, "PACKET_VERSION");
	set_int(sk[R], PACKET_AUXDATA, 1, "PACKET_AUXDATA");
	set(sk[R], PACKET_RX_RING, &ring, sizeof ring, "PACKET_RX_RING");
	set(sk[R], PACKET_ADD_MEMBERSHIP, &promisc, sizeof promisc, "a promiscuous membership");

	fanout = (getpid() & 0xffff) | PACKET_FANOUT_HASH << 16;
	sk[D] = packet(SOCK_DGRAM, ETH_P_IP);
	bind_lo(sk[D]);
	set_int(sk[D], PACKET_RESERVE, 24, "PACKET_RESERVE");
	set_int(sk[D], PACKET_ORIGDEV, 1, "PACKET_ORIGDEV");
	set(sk[D], PACKET_ADD_MEMBERSHIP, &ucast, sizeof ucast, "a unicast membership");
	set(sk[D], PACKET_TX_RING, &ring, sizeof ring, "PACKET_TX_RING");
	set_int(sk[D], PACKET_FANOUT, fanout, "PACKET_FANOUT of d");
	sk[E] = packet(SOCK_DGRAM, ETH_P_IP);
	bind_lo(sk[E]);
	set_int(sk[E], PACKET_FANOUT, fanout, "PACKET_FANOUT of e");

	sk[S] = packet(SOCK_PACKET, ETH_P_ALL);
	memset(&spkt, 0, sizeof spkt);
	spkt.sa_family = AF_PACKET;
	strcpy(spkt.sa_data, "lo");
	if (bind(sk[S], &spkt, sizeof spkt))
		zdtm_fail("bind s to lo: %s", strerror(errno));
	sk[U] = packet(SOCK_PACKET, ETH_P_ALL);

	for (int i = 0; i < N; i++) {
		len = sizeof before[i];
		memset(&before[i], 0, sizeof before[i]);
		if (getsockname(sk[i], (struct sockaddr *)&before[i], &len))
			zdtm_fail("getsockname of %s: %s", names[i], strerror(errno));
	}
	zdtm_ready();
	zdtm_wait_stop();

	for (int i = 0; i < N; i++) {
		len = sizeof after;
		memset(&after, 0, sizeof after);
		if (getsockname(sk[i], (struct sockaddr *)&after, &len))
			zdtm_fail("getsockname of %s: %s", names[i], strerror(errno));
		if (memcmp(&after, &before[i], sizeof after))
			zdtm_fail("the name of %s changed", names[i]);
	}
	if (get(sk[R], PACKET_VERSION) != TPACKET_V2 || get(sk[R], PACKET_AUXDATA) != 1 ||
	    get(sk[D], PACKET_RESERVE) != 24 || get(sk[D], PACKET_ORIGDEV) != 1 ||
	    get(sk[D], PACKET_AUXDATA) != 0)
		zdtm_fail("a SOL_PACKET option changed");
	if ((got = get(sk[D], PACKET_FANOUT)) != fanout || get(sk[E], PACKET_FANOUT) != fanout)
		zdtm_fail("fanout %#x of d became %#x", fanout, got);
	if (setsockopt(sk[R], SOL_PACKET, PACKET_RX_RING, &ring, sizeof ring) == 0 || errno != EBUSY)
		zdtm_fail("r's RX ring is gone (setting it again: %s)", strerror(errno));
	if (setsockopt(sk[D], SOL_PACKET, PACKET_TX_RING, &ring, sizeof ring) == 0 || errno != EBUSY)
		zdtm_fail("d's TX ring is gone (setting it again: %s)", strerror(errno));
	if (zdtm_read_file("/sys/class/net/lo/flags", flags, sizeof flags) < 0 ||
	    !(strtol(flags, NULL, 16) & IFF_PROMISC))
		zdtm_fail("lo is no longer promiscuous (flags %s)", flags);
	set(sk[R], PACKET_DROP_MEMBERSHIP, &promisc, sizeof promisc, "dropping r's promiscuous membership");
	set(sk[D], PACKET_DROP_MEMBERSHIP, &ucast, sizeof ucast, "dropping d's unicast membership");

	{
		int u = socket(AF_INET, SOCK_DGRAM, 0);
		struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(9) };
		struct pollfd p[2] = { { sk[D], POLLIN, 0 }, { sk[E], POLLIN, 0 } };

		to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (u < 0 || sendto(u, "x", 1, 0, (struct sockaddr *)&to, sizeof to) != 1)
			zdtm_fail("sending a datagram on lo: %s", strerror(errno));
		if (poll(p, 2, 2000) < 1)
			zdtm_fail("neither d nor e received the datagram");
	}
	zdtm_pass();
}
