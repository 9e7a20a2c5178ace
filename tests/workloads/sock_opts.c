/*
 * Socket options of every kind of socket (as CRIU's sock_opts00-02,
 * sock_tcp_opts00, sock_ip_opts00/01):
 * - a TCP socket neither bound nor connected with SO_PRIORITY 7 and SO_MARK
 *   (which need CAP_NET_ADMIN), SO_RCVLOWAT, SO_DONTROUTE, SO_NO_CHECK,
 *   SO_OOBINLINE, SO_KEEPALIVE, SO_LINGER, SO_BINDTODEVICE lo, TCP_CORK,
 *   TCP_KEEPIDLE, IP_TOS, IP_TTL, IP_FREEBIND, IP_BIND_ADDRESS_NO_PORT;
 * - a TCP6 listener with TCP_DEFER_ACCEPT, TCP_NOTSENT_LOWAT, IPV6_TCLASS,
 *   IPV6_UNICAST_HOPS;
 * - a unix socket with SO_PASSCRED, SO_PASSSEC, SO_RCVLOWAT, SO_SNDTIMEO
 *   and a locked send buffer;
 * - a UDP socket with IP_PKTINFO, IP_RECVERR, IP_MTU_DISCOVER,
 *   SO_TIMESTAMPNS, SO_RCVTIMEO and SO_BUF_LOCK on its default sizes; a
 *   UDP6 one with IPV6_FREEBIND, IPV6_RECVPKTINFO, IPV6_RECVERR,
 *   SO_TIMESTAMP, bound to device lo;
 * - raw IPv4 and IPv6 sockets of protocol UDP with IP and IPv6 options;
 * - both ends of a TCP connection over loopback with SO_PRIORITY, IP_TOS,
 *   SO_MARK, SO_LINGER, SO_RCVTIMEO, SO_OOBINLINE, TCP_NOTSENT_LOWAT.
 * Then the process drops CAP_NET_ADMIN and CAP_NET_RAW: the restore must
 * set the privileged options without it. At SIGTERM every option reads as
 * it did, the process still lacks CAP_NET_ADMIN, and the connection still
 * carries a byte.
 */
#include "zdtm.h"
#include <arpa/inet.h>
#include <linux/capability.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <sys/syscall.h>
#include <sys/un.h>

#ifndef SO_BUF_LOCK
#define SO_BUF_LOCK 72
#endif
#ifndef IPV6_FREEBIND
#define IPV6_FREEBIND 78
#endif

enum { TCP4, TCP6, UNIX, UDP4, UDP6, RAW4, RAW6, CLIENT, SERVER, LISTENER, NSOCK };

static const char *names[NSOCK] = { "tcp4", "tcp6 listener", "unix", "udp4", "udp6",
				    "raw4", "raw6", "client", "server", "listener" };

struct opt {
	int sock, level, opt, val;
	const char *name;
	int got; /* as read back after setting it: the kernel may round */
};

#define O(s, l, o, v) { s, l, o, v, #o, 0 }
static struct opt opts[] = {
	O(TCP4, SOL_IP, IP_TOS, IPTOS_THROUGHPUT),
	O(TCP4, SOL_SOCKET, SO_PRIORITY, 7),
	O(TCP4, SOL_SOCKET, SO_RCVLOWAT, 2),
	O(TCP4, SOL_SOCKET, SO_MARK, 5),
	O(TCP4, SOL_SOCKET, SO_DONTROUTE, 1),
	O(TCP4, SOL_SOCKET, SO_NO_CHECK, 1),
	O(TCP4, SOL_SOCKET, SO_OOBINLINE, 1),
	O(TCP4, SOL_SOCKET, SO_KEEPALIVE, 1),
	O(TCP4, SOL_TCP, TCP_CORK, 1),
	O(TCP4, SOL_TCP, TCP_KEEPIDLE, 77),
	O(TCP4, SOL_IP, IP_TTL, 32),
	O(TCP4, SOL_IP, IP_FREEBIND, 1),
	O(TCP4, SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1),
	O(TCP6, SOL_TCP, TCP_DEFER_ACCEPT, 5),
	O(TCP6, SOL_TCP, TCP_NOTSENT_LOWAT, 4096),
	O(TCP6, SOL_IPV6, IPV6_TCLASS, 0x20),
	O(TCP6, SOL_IPV6, IPV6_UNICAST_HOPS, 9),
	O(UNIX, SOL_SOCKET, SO_PASSCRED, 1),
	O(UNIX, SOL_SOCKET, SO_PASSSEC, 1),
	O(UNIX, SOL_SOCKET, SO_RCVLOWAT, 3),
	O(UNIX, SOL_SOCKET, SO_SNDBUF, 20000),
	O(UDP4, SOL_IP, IP_PKTINFO, 1),
	O(UDP4, SOL_IP, IP_RECVERR, 1),
	O(UDP4, SOL_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO),
	O(UDP4, SOL_SOCKET, SO_TIMESTAMPNS, 1),
	O(UDP4, SOL_SOCKET, SO_BUF_LOCK, 3),
	O(UDP6, SOL_IPV6, IPV6_FREEBIND, 1),
	O(UDP6, SOL_IPV6, IPV6_RECVPKTINFO, 1),
	O(UDP6, SOL_IPV6, IPV6_RECVERR, 1),
	O(UDP6, SOL_SOCKET, SO_TIMESTAMP, 1),
	O(RAW4, SOL_IP, IP_TTL, 32),
	O(RAW4, SOL_IP, IP_TOS, IPTOS_THROUGHPUT),
	O(RAW4, SOL_IP, IP_PKTINFO, 1),
	O(RAW4, SOL_IP, IP_HDRINCL, 1),
	O(RAW6, SOL_IPV6, IPV6_FREEBIND, 1),
	O(RAW6, SOL_IPV6, IPV6_RECVPKTINFO, 1),
	O(CLIENT, SOL_IP, IP_TOS, IPTOS_LOWDELAY),
	O(CLIENT, SOL_SOCKET, SO_PRIORITY, 3),
	O(CLIENT, SOL_SOCKET, SO_MARK, 9),
	O(SERVER, SOL_SOCKET, SO_OOBINLINE, 1),
	O(SERVER, SOL_TCP, TCP_NOTSENT_LOWAT, 1000),
};
#define NOPTS ((int)(sizeof opts / sizeof *opts))

static int sk[NSOCK];

static int get(int s, int level, int opt)
{
	int v = 0;
	socklen_t len = sizeof v;

	if (getsockopt(s, level, opt, &v, &len))
		zdtm_fail("getsockopt(%d, %d): %s", level, opt, strerror(errno));
	return v;
}

static void struct_opt(int s, int opt, const void *v, socklen_t len, const char *what)
{
	if (setsockopt(s, SOL_SOCKET, opt, v, len))
		zdtm_fail("setting %s: %s", what, strerror(errno));
}

static void check_struct(int s, int opt, const void *want, socklen_t len, const char *what)
{
	char got[64] = { 0 };
	socklen_t n = sizeof got;

	if (getsockopt(s, SOL_SOCKET, opt, got, &n))
		zdtm_fail("reading %s: %s", what, strerror(errno));
	if (n != len || memcmp(got, want, len))
		zdtm_fail("%s changed", what);
}

static int drop_net_caps(void)
{
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];
	unsigned drop = (1U << CAP_NET_ADMIN) | (1U << CAP_NET_RAW);

	if (syscall(SYS_capget, &hdr, d))
		return -1;
	d[0].effective &= ~drop;
	d[0].permitted &= ~drop;
	d[0].inheritable &= ~drop;
	return (int)syscall(SYS_capset, &hdr, d);
}

int main(void)
{
	struct sockaddr_in a4 = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	struct sockaddr_in at;
	socklen_t len = sizeof at;
	struct linger lg = { 1, 3 }, clg = { 1, 4 };
	struct timeval rcv = { 1, 500000 }, snd = { 2, 0 }, crcv = { 0, 200000 };
	char c = 0;
	int probe, mark = 1;

	zdtm_init();
	sk[TCP4] = socket(AF_INET, SOCK_STREAM, 0);
	sk[TCP6] = socket(AF_INET6, SOCK_STREAM, 0);
	sk[UNIX] = socket(AF_UNIX, SOCK_STREAM, 0);
	sk[UDP4] = socket(AF_INET, SOCK_DGRAM, 0);
	sk[UDP6] = socket(AF_INET6, SOCK_DGRAM, 0);
	sk[RAW4] = socket(AF_INET, SOCK_RAW, IPPROTO_UDP);
	sk[RAW6] = socket(AF_INET6, SOCK_RAW, IPPROTO_UDP);
	sk[CLIENT] = socket(AF_INET, SOCK_STREAM, 0);
	sk[LISTENER] = socket(AF_INET, SOCK_STREAM, 0);
	for (int i = 0; i < NSOCK; i++)
		if (i != SERVER && sk[i] < 0)
			zdtm_fail("socket %s: %s", names[i], strerror(errno));
	if (bind(sk[TCP6], (struct sockaddr *)&a6, sizeof a6) || listen(sk[TCP6], 4) ||
	    bind(sk[UDP4], (struct sockaddr *)&a4, sizeof a4) ||
	    /* Its port outlives a killed original in TIME_WAIT. */
	    setsockopt(sk[LISTENER], SOL_SOCKET, SO_REUSEADDR, &mark, sizeof mark) ||
	    bind(sk[LISTENER], (struct sockaddr *)&a4, sizeof a4) || listen(sk[LISTENER], 1) ||
	    getsockname(sk[LISTENER], (struct sockaddr *)&at, &len) ||
	    connect(sk[CLIENT], (struct sockaddr *)&at, sizeof at))
		zdtm_fail("setting the sockets up: %s", strerror(errno));
	sk[SERVER] = accept(sk[LISTENER], NULL, NULL);
	if (sk[SERVER] < 0)
		zdtm_fail("accept: %s", strerror(errno));

	for (int i = 0; i < NOPTS; i++) {
		struct opt *o = &opts[i];

		if (setsockopt(sk[o->sock], o->level, o->opt, &o->val, sizeof o->val))
			zdtm_fail("setting %s of %s to %d: %s", o->name, names[o->sock], o->val,
				  strerror(errno));
	}
	for (int i = 0; i < NOPTS; i++)
		opts[i].got = get(sk[opts[i].sock], opts[i].level, opts[i].opt);
	struct_opt(sk[TCP4], SO_LINGER, &lg, sizeof lg, "SO_LINGER of tcp4");
	struct_opt(sk[CLIENT], SO_LINGER, &clg, sizeof clg, "SO_LINGER of client");
	struct_opt(sk[UDP4], SO_RCVTIMEO, &rcv, sizeof rcv, "SO_RCVTIMEO of udp4");
	struct_opt(sk[CLIENT], SO_RCVTIMEO, &crcv, sizeof crcv, "SO_RCVTIMEO of client");
	struct_opt(sk[UNIX], SO_SNDTIMEO, &snd, sizeof snd, "SO_SNDTIMEO of unix");
	struct_opt(sk[TCP4], SO_BINDTODEVICE, "lo", 3, "SO_BINDTODEVICE of tcp4");
	struct_opt(sk[UDP6], SO_BINDTODEVICE, "lo", 3, "SO_BINDTODEVICE of udp6");
	if (get(sk[UNIX], SOL_SOCKET, SO_BUF_LOCK) != 1)
		zdtm_fail("SO_SNDBUF did not lock the send buffer");
	if (drop_net_caps())
		zdtm_fail("dropping CAP_NET_ADMIN: %s", strerror(errno));
	zdtm_ready();
	zdtm_wait_stop();

	for (int i = 0; i < NOPTS; i++) {
		struct opt *o = &opts[i];
		int now = get(sk[o->sock], o->level, o->opt);

		if (now != o->got)
			zdtm_fail("%s of %s changed: %d -> %d", o->name, names[o->sock], o->got, now);
	}
	if (get(sk[UNIX], SOL_SOCKET, SO_BUF_LOCK) != 1)
		zdtm_fail("the unix socket's send buffer is no longer locked");
	check_struct(sk[TCP4], SO_LINGER, &lg, sizeof lg, "SO_LINGER of tcp4");
	check_struct(sk[CLIENT], SO_LINGER, &clg, sizeof clg, "SO_LINGER of client");
	check_struct(sk[UDP4], SO_RCVTIMEO, &rcv, sizeof rcv, "SO_RCVTIMEO of udp4");
	check_struct(sk[CLIENT], SO_RCVTIMEO, &crcv, sizeof crcv, "SO_RCVTIMEO of client");
	check_struct(sk[UNIX], SO_SNDTIMEO, &snd, sizeof snd, "SO_SNDTIMEO of unix");
	check_struct(sk[TCP4], SO_BINDTODEVICE, "lo", 3, "SO_BINDTODEVICE of tcp4");
	check_struct(sk[UDP6], SO_BINDTODEVICE, "lo", 3, "SO_BINDTODEVICE of udp6");

	probe = socket(AF_INET, SOCK_STREAM, 0);
	if (probe < 0 || setsockopt(probe, SOL_SOCKET, SO_MARK, &mark, sizeof mark) == 0 ||
	    errno != EPERM)
		zdtm_fail("the restored process has CAP_NET_ADMIN again");
	if (send(sk[CLIENT], "x", 1, 0) != 1 || recv(sk[SERVER], &c, 1, 0) != 1 || c != 'x')
		zdtm_fail("the connection no longer carries data: %s", strerror(errno));
	zdtm_pass();
}
