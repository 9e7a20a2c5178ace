/*
 * Refusal: holds an fd ferry cannot checkpoint yet at fd 10 — argv[2] is
 * "socket" (a TCP socket listening on 127.0.0.1, any port) or "pipe" (the
 * read end of a pipe at 10, with one byte in it, whose write end the process
 * does not hold: ferry carries a pipe only with both of its ends). Checkpoint
 * must refuse it without disturbing it; at SIGTERM the fd must still work.
 */
#include "zdtm.h"
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

#define FD 10

int main(int argc, char **argv)
{
	volatile unsigned long count = 0;
	int is_socket, fds[2], on = 0;
	socklen_t len = sizeof(on);
	struct stat st;
	char c;

	if (argc < 3 || (strcmp(argv[2], "socket") && strcmp(argv[2], "pipe")))
		zdtm_fail("usage: unsupported_fd DIR socket|pipe");
	is_socket = !strcmp(argv[2], "socket");
	zdtm_init();
	if (is_socket) {
		struct sockaddr_in addr = { .sin_family = AF_INET };

		addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		fds[0] = socket(AF_INET, SOCK_STREAM, 0);
		if (fds[0] < 0 || bind(fds[0], (struct sockaddr *)&addr, sizeof(addr)) ||
		    listen(fds[0], 1) || dup2(fds[0], FD) != FD)
			zdtm_fail("socket: %s", strerror(errno));
		close(fds[0]);
	} else {
		if (pipe(fds) || write(fds[1], "x", 1) != 1 || dup2(fds[0], FD) != FD)
			zdtm_fail("pipe: %s", strerror(errno));
		close(fds[0]);
		close(fds[1]);
	}
	zdtm_ready();

	while (!zdtm_stop) {
		count++;
		if (count % 100000 == 0)
			zdtm_sleep_ms(1);
	}

	if (count == 0 || fstat(FD, &st))
		zdtm_fail("fd %d is gone", FD);
	if (is_socket) {
		if (!S_ISSOCK(st.st_mode) || getsockopt(FD, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) || !on)
			zdtm_fail("fd %d is no longer a listening socket", FD);
	} else {
		if (read(FD, &c, 1) != 1 || c != 'x' || read(FD, &c, 1) != 0)
			zdtm_fail("the pipe no longer holds its byte");
	}
	zdtm_pass();
}
