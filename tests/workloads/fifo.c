/*
 * A FIFO (named pipe) under argv[1] whose both ends the process holds: a
 * read end opened O_RDONLY|O_NONBLOCK and a write end opened O_WRONLY, with
 * 100 bytes buffered at checkpoint. At SIGTERM: the bytes come out intact
 * and in order, the ends keep their flags, and the FIFO still carries data.
 */
#include "zdtm.h"
#include <fcntl.h>
#include <sys/stat.h>

#define BUFFERED 100

int main(int argc, char **argv)
{
	int rd, wr;
	char path[4096], buf[BUFFERED + 16];

	zdtm_init();
	if (argc < 2)
		zdtm_fail("usage: fifo DIR");
	snprintf(path, sizeof path, "%s/fifo", argv[1]);
	unlink(path);
	if (mkfifo(path, 0640))
		zdtm_fail("mkfifo: %s", strerror(errno));
	rd = open(path, O_RDONLY | O_NONBLOCK);
	if (rd < 0)
		zdtm_fail("opening the read end: %s", strerror(errno));
	wr = open(path, O_WRONLY);
	if (wr < 0)
		zdtm_fail("opening the write end: %s", strerror(errno));
	for (int i = 0; i < BUFFERED; i++)
		buf[i] = (char)('A' + i % 26);
	if (write(wr, buf, BUFFERED) != BUFFERED)
		zdtm_fail("filling the FIFO: %s", strerror(errno));
	zdtm_ready();
	zdtm_wait_stop();

	if (!(fcntl(rd, F_GETFL) & O_NONBLOCK))
		zdtm_fail("the read end lost O_NONBLOCK");
	if ((fcntl(wr, F_GETFL) & O_ACCMODE) != O_WRONLY)
		zdtm_fail("the write end is no longer write-only");
	memset(buf, 0, sizeof buf);
	if (read(rd, buf, sizeof buf) != BUFFERED)
		zdtm_fail("the buffered bytes did not all come out");
	for (int i = 0; i < BUFFERED; i++)
		if (buf[i] != (char)('A' + i % 26))
			zdtm_fail("buffered byte %d is %c", i, buf[i]);
	if (read(rd, buf, 1) != -1 || errno != EAGAIN)
		zdtm_fail("the empty FIFO did not fail with EAGAIN");
	if (write(wr, "z", 1) != 1 || read(rd, buf, 1) != 1 || buf[0] != 'z')
		zdtm_fail("the FIFO no longer carries data");
	zdtm_pass();
}
