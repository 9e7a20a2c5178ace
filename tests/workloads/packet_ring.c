/*
 * A packet socket's rings mapped (CRIU's packet_sock_mmap): a SOCK_RAW
 * socket of protocol 0 (it receives nothing) with an RX and a TX ring of
 * one page each, mapped MAP_SHARED. At SIGTERM the mapping is still at its
 * address and maps the socket (its inode in /proc/self/maps), every frame
 * of both rings is free (the kernel's, or available to send), and setting
 * a ring again is refused with EBUSY (the rings are there).
 */
#include "zdtm.h"
#include <linux/if_packet.h>
#include <sys/mman.h>
#include <sys/stat.h>

#define PAGE 4096

int main(void)
{
	struct tpacket_req ring = { PAGE, 1, 1024, 4 };
	char line[512];
	struct stat st;
	unsigned char *mem;
	int sk, found = 0;
	FILE *maps;

	zdtm_init();
	sk = socket(AF_PACKET, SOCK_RAW, 0);
	if (sk < 0)
		zdtm_fail("socket: %s", strerror(errno));
	if (setsockopt(sk, SOL_PACKET, PACKET_RX_RING, &ring, sizeof ring) ||
	    setsockopt(sk, SOL_PACKET, PACKET_TX_RING, &ring, sizeof ring))
		zdtm_fail("setting the rings: %s", strerror(errno));
	mem = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, sk, 0);
	if (mem == MAP_FAILED)
		zdtm_fail("mmap of the rings: %s", strerror(errno));
	zdtm_ready();
	zdtm_wait_stop();
	if (fstat(sk, &st))
		zdtm_fail("fstat: %s", strerror(errno));
	maps = fopen("/proc/self/maps", "r");
	if (!maps)
		zdtm_fail("open /proc/self/maps: %s", strerror(errno));
	while (fgets(line, sizeof line, maps)) {
		unsigned long start;
		unsigned long long ino;

		if (sscanf(line, "%lx-%*x %*s %*s %*s %llu", &start, &ino) == 2 &&
		    start == (unsigned long)mem)
			found = ino == st.st_ino ? 1 : -1;
	}
	fclose(maps);
	if (found != 1)
		zdtm_fail("the rings are %s at %p", found ? "not the socket's" : "not mapped", mem);
	for (int f = 0; f < 8; f++) {
		struct tpacket_hdr *h = (struct tpacket_hdr *)(mem + f * 1024);

		if (h->tp_status != TP_STATUS_KERNEL)
			zdtm_fail("frame %d of the %s ring has status %lu", f % 4,
				  f < 4 ? "RX" : "TX", h->tp_status);
	}
	if (setsockopt(sk, SOL_PACKET, PACKET_RX_RING, &ring, sizeof ring) == 0 || errno != EBUSY)
		zdtm_fail("setting the RX ring again did not fail with EBUSY: %s", strerror(errno));
	zdtm_pass();
}
