/*
 * Refusal: holds at fd 10 an fd ferry refuses — argv[2] is "fifo" (the read
 * end of a FIFO under argv[1] whose write end nobody in the process holds:
 * the test opens it from outside the tree)
 * or "bigmemfd" (a memfd with 65 MiB of data, over the 64 MiB that travel
 * in an image today) or "pidfd" (a pidfd of the parent, which is outside
 * the checkpointed tree). Checkpoint must refuse it without disturbing the
 * process; at SIGTERM the fd must still be what it was.
 */
#include "zdtm.h"
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#define FD 10
#define BIG (65L << 20)

int main(int argc, char **argv)
{
	char path[4096];
	struct stat st;
	int fd;

	zdtm_init();
	if (argc < 3 ||
	    (strcmp(argv[2], "fifo") && strcmp(argv[2], "bigmemfd") && strcmp(argv[2], "pidfd")))
		zdtm_fail("usage: refused_fds DIR fifo|bigmemfd|pidfd");
	if (!strcmp(argv[2], "fifo")) {
		snprintf(path, sizeof path, "%s/fifo", argv[1]);
		if (mkfifo(path, 0600))
			zdtm_fail("mkfifo: %s", strerror(errno));
		fd = open(path, O_RDONLY | O_NONBLOCK);
	} else if (!strcmp(argv[2], "pidfd")) {
		fd = (int)syscall(SYS_pidfd_open, getppid(), 0);
	} else {
		static char chunk[1 << 20];
		memset(chunk, 'm', sizeof chunk);
		fd = memfd_create("ferry-big", 0);
		for (long done = 0; fd >= 0 && done < BIG; done += sizeof chunk)
			if (write(fd, chunk, sizeof chunk) != (ssize_t)sizeof chunk)
				zdtm_fail("filling the memfd: %s", strerror(errno));
	}
	if (fd < 0 || dup2(fd, FD) != FD)
		zdtm_fail("%s: %s", argv[2], strerror(errno));
	close(fd);
	zdtm_ready();
	zdtm_wait_stop();
	if (fstat(FD, &st))
		zdtm_fail("fd %d is gone", FD);
	if (!strcmp(argv[2], "pidfd")) {
		char link[64] = "";

		if (readlink("/proc/self/fd/10", link, sizeof link - 1) < 0 ||
		    strcmp(link, "anon_inode:[pidfd]"))
			zdtm_fail("fd %d is no longer a pidfd (%s)", FD, link);
	} else if (!strcmp(argv[2], "fifo") ? !S_ISFIFO(st.st_mode) : st.st_size != BIG) {
		zdtm_fail("fd %d changed", FD);
	}
	zdtm_pass();
}
