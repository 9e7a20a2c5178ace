/*
 * N idle established TCP connections to a peer outside the tree (the
 * benchmark's listener on 127.0.0.1:PORT): argv[1] PORT, argv[2] N.
 * Connects N client sockets, prints READY and waits for SIGTERM (nothing
 * is ever sent), then prints PASS. Used by scripts/bench.sh to measure
 * the downtime the network lock adds per connection.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static volatile sig_atomic_t done;

static void on_term(int sig)
{
	(void)sig;
	done = 1;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: bench_conns PORT N\n");
		return 2;
	}
	int port = atoi(argv[1]), n = atoi(argv[2]);
	struct rlimit lim = { n + 64, n + 64 };
	if (setrlimit(RLIMIT_NOFILE, &lim) && n + 64 > 1024) {
		perror("setrlimit");
		return 1;
	}
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons(port) };
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (int i = 0; i < n; i++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr))) {
			perror("connect");
			return 1;
		}
	}
	signal(SIGTERM, on_term);
	printf("READY\n");
	fflush(stdout);
	while (!done)
		pause();
	printf("PASS\n");
	return 0;
}
