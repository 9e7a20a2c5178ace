/*
 * A FIFO made at the path of a unix socket whose file was unlinked (as
 * CRIU's fifo_upon_unix_socket00): a datagram socket S is bound to
 * argv[1]/sock and C connects to it; the path is unlinked and a FIFO made
 * there, held open at both ends. At SIGTERM C's datagram reaches S, a byte
 * goes through the FIFO, and the path is still the FIFO.
 */
#include "zdtm.h"
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/un.h>

static void through(int in, int out, const char *what)
{
	char c = 'x';

	if (write(in, &c, 1) != 1)
		zdtm_fail("%s: write: %s", what, strerror(errno));
	c = 0;
	if (read(out, &c, 1) != 1 || c != 'x')
		zdtm_fail("%s: read: %s", what, strerror(errno));
}

int main(int argc, char **argv)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct stat st, was;
	int s, c, fin, fout;

	zdtm_init();
	if (argc < 2 || strlen(argv[1]) + 6 >= sizeof addr.sun_path)
		zdtm_fail("usage: unix_ghost_fifo DIR (short)");
	snprintf(addr.sun_path, sizeof addr.sun_path, "%s/sock", argv[1]);
	s = socket(AF_UNIX, SOCK_DGRAM, 0);
	c = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (s < 0 || c < 0 || bind(s, (struct sockaddr *)&addr, sizeof addr) ||
	    connect(c, (struct sockaddr *)&addr, sizeof addr))
		zdtm_fail("socket, bind or connect: %s", strerror(errno));
	if (unlink(addr.sun_path) || mkfifo(addr.sun_path, 0600))
		zdtm_fail("unlink or mkfifo: %s", strerror(errno));
	fin = open(addr.sun_path, O_RDONLY | O_NONBLOCK);
	fout = open(addr.sun_path, O_WRONLY);
	if (fin < 0 || fout < 0 || stat(addr.sun_path, &was))
		zdtm_fail("opening the FIFO: %s", strerror(errno));
	through(c, s, "the socket");
	through(fout, fin, "the FIFO");
	zdtm_ready();
	zdtm_wait_stop();
	through(c, s, "the socket");
	through(fout, fin, "the FIFO");
	if (stat(addr.sun_path, &st) || !S_ISFIFO(st.st_mode))
		zdtm_fail("%s is no longer a FIFO", addr.sun_path);
	zdtm_pass();
}
