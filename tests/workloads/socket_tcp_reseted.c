/*
 * CRIU's socket-tcp-reseted, made deterministic: both ends of a loopback
 * connection in one process, the client end reset while the server end
 * is still ESTABLISHED with bytes it sent unacknowledged.
 *
 * argv[2] PATH: it joins the network namespace at PATH (made by the test,
 * which the checkpoint leaves outside: --external-netns). There the
 * client writes "asd" (acknowledged), a firewall table of the workload's
 * (nftables, inet ferry_reseted) rejects with a reset every packet to the
 * listener's port, and the server writes "asdas": the client's
 * acknowledgement is rejected, so the client end is reset, and the
 * server's retransmissions stay unanswered (the reset the kernel answers
 * them with goes to the listener's port too, and a reset is never
 * answered), so the server end stays ESTABLISHED until the checkpoint.
 * It is READY once the server end's retransmissions are 3 s apart. The
 * test deletes the table between the checkpoint and the restore, or, for
 * a checkpoint that leaves the tree running, right before the checkpoint
 * (the server end's next retransmission comes after it).
 *
 * At SIGTERM: the server end reads "asd", and a write to it fails at once:
 * the restored (or resumed) server end's window probe was answered by a
 * reset (the client end it reaches is gone), which the network lock must
 * not drop.
 */
#include "zdtm_tcp.h"
#include <arpa/inet.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/ioctl.h>

/* Waits for a retransmission of the server end `fd` after which the next
 * one is at least 3 s away (its timeout doubled at each): the test then
 * has that long to delete the table and checkpoint before the server end
 * could be reset (when the table is deleted before the checkpoint). */
static void settle(int fd)
{
	struct tcp_info info;
	socklen_t len = sizeof(info);
	unsigned retrans = 0;

	for (int i = 0; i < 1000; i++) {
		if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len))
			zdtm_fail("TCP_INFO: %s", strerror(errno));
		if (info.tcpi_total_retrans != retrans && info.tcpi_rto >= 3000000)
			return;
		retrans = info.tcpi_total_retrans;
		zdtm_sleep_ms(10);
	}
	zdtm_fail("the server end's retransmission timeout never reached 3 s (%u us)",
		  info.tcpi_rto);
}

int main(int argc, char **argv)
{
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(addr);
	const char *path = argc > 2 ? argv[2] : NULL;
	char cmd[512], buf[10];
	int ns, l, clt, fd;

	zdtm_init();
	ns = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
	if (ns < 0 || setns(ns, CLONE_NEWNET))
		zdtm_fail("joining the network namespace %s: %s", path ? path : "(none given)",
			  strerror(errno));
	close(ns);
	if (system("ip link set up dev lo"))
		zdtm_fail("cannot set lo up in %s", path);
	l = socket(AF_INET, SOCK_STREAM, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&addr, sizeof(addr)) || listen(l, 1) ||
	    getsockname(l, (struct sockaddr *)&addr, &len))
		zdtm_fail("listener: %s", strerror(errno));
	clt = socket(AF_INET, SOCK_STREAM, 0);
	if (clt < 0 || connect(clt, (struct sockaddr *)&addr, sizeof(addr)))
		zdtm_fail("connect: %s", strerror(errno));
	fd = accept(l, NULL, NULL);
	if (fd < 0)
		zdtm_fail("accept: %s", strerror(errno));
	if (write(clt, "asd", 3) != 3)
		zdtm_fail("write to the client end: %s", strerror(errno));
	for (int i = 0, n = 0; ioctl(fd, FIONREAD, &n) == 0 && n < 3; i++) {
		if (i == 500)
			zdtm_fail("the client's bytes never came");
		zdtm_sleep_ms(10);
	}
	snprintf(cmd, sizeof(cmd),
		 "nft 'add table inet ferry_reseted; "
		 "add chain inet ferry_reseted input { type filter hook input priority 0; }; "
		 "add rule inet ferry_reseted input tcp dport %d reject with tcp reset'",
		 ntohs(addr.sin_port));
	if (system(cmd))
		zdtm_fail("cannot add the rejecting rule in %s", path);
	if (write(fd, "asdas", 5) != 5)
		zdtm_fail("write to the server end: %s", strerror(errno));
	zdtm_wait_tcp_state(clt, TCP_CLOSE, "the client end, its acknowledgement rejected");
	settle(fd);
	if (zdtm_tcp_state(fd) != TCP_ESTABLISHED)
		zdtm_fail("the server end: state %d, not ESTABLISHED", zdtm_tcp_state(fd));

	zdtm_ready();
	zdtm_wait_stop();

	if (read(fd, buf, sizeof(buf)) != 3)
		zdtm_fail("the server end did not read the client's 3 bytes (%s)", strerror(errno));
	if (send(fd, buf, 3, MSG_NOSIGNAL) != -1)
		zdtm_fail("can write into a reset connection: the server end is in state %d",
			  zdtm_tcp_state(fd));
	zdtm_pass();
}
