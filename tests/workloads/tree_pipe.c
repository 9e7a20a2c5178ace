/*
 * A parent and a child talking over two pipes: the parent keeps up to
 * WINDOW sequence numbers queued in the pipe to the child (so bytes are
 * buffered at any checkpoint), the child answers each with its double on
 * the other pipe. At SIGTERM the parent closes its end, the child checks
 * every number it read and exits 0 at EOF; the parent checks every answer
 * and that it reaped its child with exit code 0.
 */
#include "zdtm.h"
#include <stdint.h>
#include <sys/wait.h>

#define WINDOW 200

static void child(int in, int out)
{
	uint64_t n, expected = 0;

	for (;;) {
		ssize_t r = read(in, &n, sizeof n);
		if (r == 0)
			_exit(0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r != sizeof n || n != expected)
			_exit(1);
		expected++;
		n *= 2;
		if (write(out, &n, sizeof n) != sizeof n)
			_exit(2);
		if (expected % 64 == 0)
			zdtm_sleep_ms(1);
	}
}

int main(void)
{
	int down[2], up[2], status;
	uint64_t sent = 0, answered = 0, n;
	pid_t pid;

	zdtm_init();
	if (pipe(down) || pipe(up))
		zdtm_fail("pipe: %s", strerror(errno));
	pid = fork();
	if (pid < 0)
		zdtm_fail("fork: %s", strerror(errno));
	if (pid == 0) {
		close(down[1]);
		close(up[0]);
		child(down[0], up[1]);
	}
	close(down[0]);
	close(up[1]);
	zdtm_ready();
	while (!zdtm_stop) {
		while (sent - answered < WINDOW) {
			if (write(down[1], &sent, sizeof sent) != sizeof sent) {
				if (errno == EINTR)
					break;
				zdtm_fail("write to the child: %s", strerror(errno));
			}
			sent++;
		}
		ssize_t r = read(up[0], &n, sizeof n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r != sizeof n)
			zdtm_fail("read from the child returned %zd", r);
		if (n != answered * 2)
			zdtm_fail("answer %llu is %llu", (unsigned long long)answered,
				  (unsigned long long)n);
		answered++;
	}
	close(down[1]);
	while (answered < sent) {
		ssize_t r = read(up[0], &n, sizeof n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r != sizeof n)
			zdtm_fail("the child answered %llu of %llu", (unsigned long long)answered,
				  (unsigned long long)sent);
		if (n != answered * 2)
			zdtm_fail("answer %llu is %llu", (unsigned long long)answered,
				  (unsigned long long)n);
		answered++;
	}
	if (waitpid(pid, &status, 0) != pid)
		zdtm_fail("waitpid: %s", strerror(errno));
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		zdtm_fail("the child ended with status %#x", status);
	if (answered < WINDOW)
		zdtm_fail("only %llu answers", (unsigned long long)answered);
	zdtm_pass();
}
