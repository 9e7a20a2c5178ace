/*
 * A FIFO under argv[1] holding data whose only writer has closed: the
 * process holds the read end alone (O_NONBLOCK), nobody holds a write end.
 * At SIGTERM: poll reports the hang-up, the data reads back whole, then
 * end of file; a writer opened now by path can still reach the reader.
 */
#include "zdtm.h"
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>

#define DATA "left behind by a writer that is gone"

int main(int argc, char **argv)
{
	char path[4096], buf[128];
	struct pollfd p = { .events = POLLIN };
	int rd, wr;
	ssize_t n;

	zdtm_init();
	if (argc < 2)
		zdtm_fail("usage: fifo_no_writer DIR");
	snprintf(path, sizeof path, "%s/fifo", argv[1]);
	if (mkfifo(path, 0600))
		zdtm_fail("mkfifo: %s", strerror(errno));
	rd = open(path, O_RDONLY | O_NONBLOCK);
	wr = open(path, O_WRONLY);
	if (rd < 0 || wr < 0 || write(wr, DATA, sizeof DATA) != sizeof DATA || close(wr))
		zdtm_fail("setup: %s", strerror(errno));
	zdtm_ready();
	zdtm_wait_stop();

	p.fd = rd;
	if (poll(&p, 1, 0) != 1 || !(p.revents & POLLHUP) || !(p.revents & POLLIN))
		zdtm_fail("poll gives %#x, not data and a hang-up", p.revents);
	if (!(fcntl(rd, F_GETFL) & O_NONBLOCK))
		zdtm_fail("the read end lost O_NONBLOCK");
	n = read(rd, buf, sizeof buf);
	if (n != sizeof DATA || memcmp(buf, DATA, sizeof DATA))
		zdtm_fail("read %zd bytes, not the data left behind", n);
	n = read(rd, buf, sizeof buf);
	if (n != 0)
		zdtm_fail("read after the data gives %zd (%s), not end of file", n,
			  n < 0 ? strerror(errno) : "data");
	wr = open(path, O_WRONLY | O_NONBLOCK);
	if (wr < 0 || write(wr, "x", 1) != 1 || read(rd, buf, 1) != 1 || buf[0] != 'x')
		zdtm_fail("a new writer does not reach the reader: %s", strerror(errno));
	zdtm_pass();
}
