/*
 * Separate open file descriptions of the same pipe ends: each end reopened
 * through /proc/self/fd (a new description, unlike dup), the reopened read
 * end and the original write end O_NONBLOCK, the other two blocking, with
 * 5 bytes buffered. At SIGTERM: each description has its own flags,
 * changing one leaves the other alone, and data written through either
 * write end comes out of either read end.
 */
#include "zdtm.h"
#include <fcntl.h>

static int reopen(int fd, int flags)
{
	char path[64];
	int r;

	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	r = open(path, flags);
	if (r < 0)
		zdtm_fail("reopening %s: %s", path, strerror(errno));
	return r;
}

static void nonblock_is(int fd, int want, const char *what)
{
	int flags = fcntl(fd, F_GETFL);

	if (flags < 0 || !!(flags & O_NONBLOCK) != want)
		zdtm_fail("%s has flags %#o, O_NONBLOCK %s expected", what, flags,
			  want ? "set" : "clear");
}

int main(void)
{
	int p[2], rd2, wr2;
	char buf[16];

	zdtm_init();
	if (pipe(p))
		zdtm_fail("pipe: %s", strerror(errno));
	rd2 = reopen(p[0], O_RDONLY | O_NONBLOCK);
	wr2 = reopen(p[1], O_WRONLY);
	if (fcntl(p[1], F_SETFL, O_NONBLOCK))
		zdtm_fail("F_SETFL: %s", strerror(errno));
	if (write(wr2, "hello", 5) != 5)
		zdtm_fail("write: %s", strerror(errno));
	zdtm_ready();
	zdtm_wait_stop();

	nonblock_is(p[0], 0, "the read end");
	nonblock_is(rd2, 1, "the reopened read end");
	nonblock_is(p[1], 1, "the write end");
	nonblock_is(wr2, 0, "the reopened write end");
	if (fcntl(p[0], F_SETFL, O_NONBLOCK) || fcntl(rd2, F_SETFL, 0))
		zdtm_fail("F_SETFL: %s", strerror(errno));
	nonblock_is(p[0], 1, "the read end after F_SETFL");
	nonblock_is(rd2, 0, "the reopened read end after F_SETFL");
	if (read(rd2, buf, 5) != 5 || memcmp(buf, "hello", 5))
		zdtm_fail("the buffered bytes did not come out of the reopened read end");
	if (write(p[1], "a", 1) != 1 || read(rd2, buf, 1) != 1 || buf[0] != 'a')
		zdtm_fail("the reopened read end does not read the same pipe");
	if (write(wr2, "b", 1) != 1 || read(p[0], buf, 1) != 1 || buf[0] != 'b')
		zdtm_fail("the reopened write end does not write into the same pipe");
	if (read(p[0], buf, 1) != -1 || errno != EAGAIN)
		zdtm_fail("the empty pipe did not say EAGAIN");
	zdtm_pass();
}
