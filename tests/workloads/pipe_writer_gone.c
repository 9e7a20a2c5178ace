/*
 * A pipe whose write end nobody holds any more (the writer closed it, or
 * exited, as a shell's command substitution does): the read end at fd 10
 * with three bytes in it. It is carried (nothing outside holds an end);
 * at SIGTERM the bytes must come out, then end of file.
 */
#include "zdtm.h"

#define FD 10

int main(void)
{
	int fds[2];
	char buf[8];

	zdtm_init();
	if (pipe(fds) || write(fds[1], "abc", 3) != 3 || dup2(fds[0], FD) != FD)
		zdtm_fail("pipe: %s", strerror(errno));
	close(fds[0]);
	close(fds[1]);
	zdtm_ready();
	zdtm_wait_stop();
	if (read(FD, buf, sizeof buf) != 3 || memcmp(buf, "abc", 3))
		zdtm_fail("the pipe no longer holds its bytes");
	if (read(FD, buf, sizeof buf) != 0)
		zdtm_fail("the pipe does not end: its write end is open somewhere");
	zdtm_pass();
}
