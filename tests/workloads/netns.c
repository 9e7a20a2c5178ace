/*
 * A process in a network namespace other than its starter's, holding a
 * loopback TCP connection with itself (bytes queued unread both ways) and
 * a listening socket.
 *
 * argv[2] "own": it makes the namespace (unshare(CLONE_NEWNET)), brings lo
 * up, adds 10.77.0.1/32 to lo (the connection uses it: the restore must
 * give it back before the socket is bound), and puts a firewall in it as
 * zdtm's socket-tcp-*-nfconntrack do: iptables-legacy (if installed) and
 * nftables rules accepting only conntrack's NEW and ESTABLISHED TCP
 * packets on lo and dropping the rest. Checkpoint carries the namespace.
 *
 * argv[2] "join", argv[3] PATH: it joins the namespace at PATH (made by the
 * test, `ip netns add`), which the checkpoint leaves outside
 * (--external-netns) and the restore joins again (--join-netns PATH).
 *
 * At SIGTERM: it is in a namespace of its own ("own": lo is up, the
 * address and both firewalls are there) or in the one at PATH ("join"),
 * each end reads the bytes queued for it, more bytes go both ways through
 * the firewall, and a new connection to the listener is accepted.
 */
#include "zdtm.h"
#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#define QUEUED 3000
#define MORE (64 * 1024)

static int quiet(const char *cmd)
{
	char line[512];

	snprintf(line, sizeof line, "%s > /dev/null 2>&1", cmd);
	return system(line);
}

static int have_iptables_legacy(void)
{
	return quiet("iptables-legacy -w -S") == 0;
}

static void make_own_namespace(void)
{
	if (unshare(CLONE_NEWNET))
		zdtm_fail("unshare(CLONE_NEWNET): %s", strerror(errno));
	if (quiet("ip link set up dev lo") || quiet("ip address add 10.77.0.1/32 dev lo"))
		zdtm_fail("cannot set lo up with 10.77.0.1");
	if (have_iptables_legacy()
	    && (quiet("iptables-legacy -w -A INPUT -i lo -p tcp -m state --state NEW,ESTABLISHED -j ACCEPT")
		|| quiet("iptables-legacy -w -A INPUT -j DROP")))
		zdtm_fail("cannot add the iptables-legacy rules");
	if (quiet("nft add table ip zdtm_fw")
	    || quiet("nft 'add chain ip zdtm_fw input { type filter hook input priority 0 ; }'")
	    || quiet("nft add rule ip zdtm_fw input iifname lo ip protocol tcp ct state new,established accept")
	    || quiet("nft add rule ip zdtm_fw input drop"))
		zdtm_fail("cannot add the nftables rules");
}

static void check_own_namespace(void)
{
	struct ifreq ifr;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	memset(&ifr, 0, sizeof ifr);
	strcpy(ifr.ifr_name, "lo");
	if (fd < 0 || ioctl(fd, SIOCGIFFLAGS, &ifr))
		zdtm_fail("SIOCGIFFLAGS lo: %s", strerror(errno));
	if (!(ifr.ifr_flags & IFF_UP))
		zdtm_fail("lo is down after restore");
	close(fd);
	if (quiet("ip -o address show dev lo | grep -q 'inet 10.77.0.1/32'"))
		zdtm_fail("10.77.0.1/32 is no longer on lo");
	if (have_iptables_legacy() && quiet("iptables-legacy -w -S INPUT | grep -q -- '-A INPUT -j DROP'"))
		zdtm_fail("the iptables-legacy DROP rule is gone");
	if (quiet("nft list chain ip zdtm_fw input | grep -q 'ct state established,new accept'"))
		zdtm_fail("the nftables table zdtm_fw is gone or changed");
	if (!quiet("nft list tables | grep -q ferry_"))
		zdtm_fail("a ferry lock table came with the namespace");
}

static int tcp_socket(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		zdtm_fail("socket: %s", strerror(errno));
	return fd;
}

static void send_pattern(int fd, size_t len, unsigned seed)
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
			zdtm_fail("send: %s", strerror(errno));
		done += (size_t)w;
	}
}

int main(int argc, char **argv)
{
	struct sockaddr_in addr = { .sin_family = AF_INET };
	socklen_t len = sizeof addr;
	int own = argc > 2 && !strcmp(argv[2], "own");
	const char *path = argc > 3 ? argv[3] : NULL;
	int lfd, a, b;

	zdtm_init();
	if (own) {
		make_own_namespace();
	} else {
		int ns = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
		if (ns < 0 || setns(ns, CLONE_NEWNET))
			zdtm_fail("joining the network namespace %s: %s", path ? path : "(none given)",
				  strerror(errno));
		close(ns);
		if (quiet("ip link set up dev lo"))
			zdtm_fail("cannot set lo up in %s", path);
	}
	addr.sin_addr.s_addr = inet_addr(own ? "10.77.0.1" : "127.0.0.1");
	lfd = tcp_socket();
	if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) || listen(lfd, 4)
	    || getsockname(lfd, (struct sockaddr *)&addr, &len))
		zdtm_fail("listen: %s", strerror(errno));
	a = tcp_socket();
	if (connect(a, (struct sockaddr *)&addr, sizeof addr))
		zdtm_fail("connect: %s", strerror(errno));
	b = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (b < 0)
		zdtm_fail("accept: %s", strerror(errno));
	send_pattern(a, QUEUED, 1);
	send_pattern(b, QUEUED, 2);
	zdtm_ready();
	zdtm_wait_stop();

	if (own) {
		check_own_namespace();
	} else {
		struct stat want, have;
		if (stat(path, &want) || stat("/proc/self/ns/net", &have))
			zdtm_fail("stat of the namespaces: %s", strerror(errno));
		if (want.st_ino != have.st_ino)
			zdtm_fail("not in the network namespace %s after restore", path);
	}
	zdtm_recv_pattern(b, QUEUED, 1, "queued a->b");
	zdtm_recv_pattern(a, QUEUED, 2, "queued b->a");
	send_pattern(a, MORE, 3);
	zdtm_recv_pattern(b, MORE, 3, "more a->b");
	send_pattern(b, MORE, 4);
	zdtm_recv_pattern(a, MORE, 4, "more b->a");
	{
		int c = tcp_socket(), d;
		if (connect(c, (struct sockaddr *)&addr, sizeof addr))
			zdtm_fail("a new connection after restore: %s", strerror(errno));
		d = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (d < 0)
			zdtm_fail("accepting a new connection after restore: %s", strerror(errno));
		close(c);
		close(d);
	}
	zdtm_pass();
}
