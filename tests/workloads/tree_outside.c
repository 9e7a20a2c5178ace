/*
 * Refusal: the parent holds the write end of a pipe whose read end its
 * child holds at fd 10. Checkpointing the child alone must be refused (the
 * pipe's other end is outside that tree) without disturbing either; at
 * SIGTERM the parent sends a byte, the child must read it and exit 0.
 */
#include "zdtm.h"
#include <sys/wait.h>

#define FD 10

int main(void)
{
	int fds[2], status;
	pid_t pid;
	char c;

	zdtm_init();
	if (pipe(fds))
		zdtm_fail("pipe: %s", strerror(errno));
	pid = fork();
	if (pid < 0)
		zdtm_fail("fork: %s", strerror(errno));
	if (pid == 0) {
		signal(SIGTERM, SIG_DFL);
		if (dup2(fds[0], FD) != FD)
			_exit(3);
		close(fds[0]);
		close(fds[1]);
		for (;;) {
			ssize_t r = read(FD, &c, 1);
			if (r < 0 && errno == EINTR)
				continue;
			_exit(r == 1 && c == 'x' ? 0 : 1);
		}
	}
	close(fds[0]);
	zdtm_ready();
	zdtm_wait_stop();
	if (write(fds[1], "x", 1) != 1)
		zdtm_fail("write: %s", strerror(errno));
	if (waitpid(pid, &status, 0) != pid)
		zdtm_fail("waitpid: %s", strerror(errno));
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		zdtm_fail("the child ended with status %#x", status);
	zdtm_pass();
}
