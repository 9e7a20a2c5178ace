/*
 * Pipes and shared file descriptions: a pipe with 3000 bytes buffered at
 * checkpoint and a capacity of 128 KiB; a pipe whose read end is
 * O_NONBLOCK; a regular file opened once and dup'ed, whose two fds must
 * keep sharing one offset. At SIGTERM: the buffered bytes come out intact
 * and in order, the flags and capacity are as set, both pipes still carry
 * data, and a write through one dup'ed fd moves the other's offset.
 */
#include "zdtm.h"
#include <fcntl.h>

#define BUFFERED 3000

int main(int argc, char **argv)
{
	int full[2], nonblock[2], file, twin;
	char path[4096], buf[BUFFERED + 16];

	zdtm_init();
	if (argc < 2)
		zdtm_fail("usage: pipes DIR");
	if (pipe(full) || pipe(nonblock))
		zdtm_fail("pipe: %s", strerror(errno));
	if (fcntl(full[1], F_SETPIPE_SZ, 128 * 1024) < 0)
		zdtm_fail("F_SETPIPE_SZ: %s", strerror(errno));
	for (int i = 0; i < BUFFERED; i++)
		buf[i] = (char)('a' + i % 26);
	if (write(full[1], buf, BUFFERED) != BUFFERED)
		zdtm_fail("filling the pipe: %s", strerror(errno));
	if (fcntl(nonblock[0], F_SETFL, O_NONBLOCK))
		zdtm_fail("O_NONBLOCK: %s", strerror(errno));
	snprintf(path, sizeof path, "%s/shared", argv[1]);
	file = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (file < 0 || write(file, "0123456789", 10) != 10)
		zdtm_fail("shared file: %s", strerror(errno));
	twin = dup(file);
	if (twin < 0)
		zdtm_fail("dup: %s", strerror(errno));
	zdtm_ready();
	zdtm_wait_stop();

	if (fcntl(full[1], F_GETPIPE_SZ) != 128 * 1024)
		zdtm_fail("the pipe's capacity is %d", fcntl(full[1], F_GETPIPE_SZ));
	memset(buf, 0, sizeof buf);
	if (read(full[0], buf, sizeof buf) != BUFFERED)
		zdtm_fail("the buffered bytes did not all come out");
	for (int i = 0; i < BUFFERED; i++)
		if (buf[i] != (char)('a' + i % 26))
			zdtm_fail("buffered byte %d is %c", i, buf[i]);
	if (write(full[1], "z", 1) != 1 || read(full[0], buf, 1) != 1 || buf[0] != 'z')
		zdtm_fail("the full pipe no longer carries data");
	if (!(fcntl(nonblock[0], F_GETFL) & O_NONBLOCK))
		zdtm_fail("the read end lost O_NONBLOCK");
	if (read(nonblock[0], buf, 1) != -1 || errno != EAGAIN)
		zdtm_fail("reading the empty non-blocking pipe did not fail with EAGAIN");
	if (write(nonblock[1], "y", 1) != 1 || read(nonblock[0], buf, 1) != 1 || buf[0] != 'y')
		zdtm_fail("the non-blocking pipe no longer carries data");
	if (lseek(twin, 0, SEEK_CUR) != 10)
		zdtm_fail("the dup'ed fd's offset is %ld", (long)lseek(twin, 0, SEEK_CUR));
	if (write(file, "ab", 2) != 2 || lseek(twin, 0, SEEK_CUR) != 12)
		zdtm_fail("the dup'ed fds no longer share an offset");
	zdtm_pass();
}
