/*
 * The permission bits of memfds: one fchmod'ed to 0642, one to 0400 (its
 * fd still writable, as opened), one left at memfd_create's 0777, each
 * holding a few bytes. At SIGTERM each must have its mode and its bytes,
 * and the 0400 one must still take writes through its fd.
 */
#define _GNU_SOURCE
#include "zdtm.h"
#include <sys/mman.h>
#include <sys/stat.h>

struct memfd {
	const char *name;
	mode_t mode; /* 0: left as created */
	int fd;
};

static struct memfd fds[] = {
	{ "mode-0642", 0642, -1 },
	{ "mode-0400", 0400, -1 },
	{ "mode-default", 0, -1 },
};

#define NFDS (sizeof fds / sizeof fds[0])

static void check(const char *when)
{
	for (size_t i = 0; i < NFDS; i++) {
		mode_t want = fds[i].mode ? fds[i].mode : 0777;
		struct stat st;
		char buf[32];

		if (fstat(fds[i].fd, &st))
			zdtm_fail("%s: fstat of %s: %s", when, fds[i].name, strerror(errno));
		if ((st.st_mode & 07777) != want)
			zdtm_fail("%s: %s has mode %04o, not %04o", when, fds[i].name,
				  (unsigned)(st.st_mode & 07777), (unsigned)want);
		if (pread(fds[i].fd, buf, sizeof buf, 0) != (ssize_t)strlen(fds[i].name) ||
		    memcmp(buf, fds[i].name, strlen(fds[i].name)))
			zdtm_fail("%s: %s lost its contents", when, fds[i].name);
	}
}

int main(void)
{
	zdtm_init();
	for (size_t i = 0; i < NFDS; i++) {
		fds[i].fd = memfd_create(fds[i].name, 0);
		if (fds[i].fd < 0)
			zdtm_fail("memfd_create: %s", strerror(errno));
		if (write(fds[i].fd, fds[i].name, strlen(fds[i].name)) !=
		    (ssize_t)strlen(fds[i].name))
			zdtm_fail("write: %s", strerror(errno));
		if (fds[i].mode && fchmod(fds[i].fd, fds[i].mode))
			zdtm_fail("fchmod(%s): %s", fds[i].name, strerror(errno));
	}
	check("before the checkpoint");
	zdtm_ready();
	zdtm_wait_stop();
	check("after SIGTERM");
	if (pwrite(fds[1].fd, "M", 1, 0) != 1)
		zdtm_fail("write to the 0400 memfd: %s", strerror(errno));
	zdtm_pass();
}
