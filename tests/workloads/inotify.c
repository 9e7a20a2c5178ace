/*
 * inotify: a non-blocking inotify instance watching a directory
 * (IN_CREATE) and a file (IN_MODIFY) under argv[1], whose watch
 * descriptors are 2 and 3 (watch 1 was added and removed, so restore must
 * skip a number). At SIGTERM: creating a file in the directory and
 * writing to the file produce exactly those events with the original
 * watch descriptors, and the instance is still non-blocking.
 */
#include "zdtm.h"
#include <fcntl.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/stat.h>

/* Reads one event from in (waiting up to a second) into ev; fails if none. */
static void next_event(int in, struct inotify_event *ev, size_t size)
{
	struct pollfd p = { .fd = in, .events = POLLIN };

	if (poll(&p, 1, 1000) != 1)
		zdtm_fail("no inotify event came");
	if (read(in, ev, size) < (ssize_t)sizeof(*ev))
		zdtm_fail("reading an inotify event: %s", strerror(errno));
}

int main(int argc, char **argv)
{
	char dir[4096], file[4096], created[4200];
	union {
		struct inotify_event ev;
		char buf[sizeof(struct inotify_event) + 256];
	} u;
	int in, first, wd_dir, wd_file, fd;

	zdtm_init();
	if (argc < 2)
		zdtm_fail("usage: inotify DIR");
	snprintf(dir, sizeof dir, "%s/watched", argv[1]);
	snprintf(file, sizeof file, "%s/file", argv[1]);
	snprintf(created, sizeof created, "%s/new", dir);
	if (mkdir(dir, 0755) && errno != EEXIST)
		zdtm_fail("mkdir %s: %s", dir, strerror(errno));
	fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		zdtm_fail("creating %s: %s", file, strerror(errno));
	close(fd);
	in = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (in < 0)
		zdtm_fail("inotify_init1: %s", strerror(errno));
	first = inotify_add_watch(in, argv[1], IN_ATTRIB);
	wd_dir = inotify_add_watch(in, dir, IN_CREATE);
	if (first < 0 || wd_dir < 0 || inotify_rm_watch(in, first))
		zdtm_fail("inotify watches: %s", strerror(errno));
	wd_file = inotify_add_watch(in, file, IN_MODIFY);
	if (wd_file < 0)
		zdtm_fail("inotify_add_watch %s: %s", file, strerror(errno));
	if (first != 1 || wd_dir != 2 || wd_file != 3)
		zdtm_fail("watch descriptors are %d %d %d", first, wd_dir, wd_file);
	/* The IN_IGNORED of the removed watch. */
	while (read(in, u.buf, sizeof u.buf) > 0)
		;
	zdtm_ready();
	zdtm_wait_stop();

	if (!(fcntl(in, F_GETFL) & O_NONBLOCK))
		zdtm_fail("the inotify fd lost O_NONBLOCK");
	if (read(in, u.buf, sizeof u.buf) != -1 || errno != EAGAIN)
		zdtm_fail("an event was queued before any change (mask %#x wd %d)", u.ev.mask, u.ev.wd);
	fd = open(created, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		zdtm_fail("creating %s: %s", created, strerror(errno));
	close(fd);
	next_event(in, &u.ev, sizeof u.buf);
	if (u.ev.wd != wd_dir || !(u.ev.mask & IN_CREATE) || strcmp(u.ev.name, "new"))
		zdtm_fail("creating a file gave wd %d mask %#x name %s", u.ev.wd, u.ev.mask,
			  u.ev.len ? u.ev.name : "");
	fd = open(file, O_WRONLY);
	if (fd < 0 || write(fd, "z", 1) != 1)
		zdtm_fail("writing %s: %s", file, strerror(errno));
	close(fd);
	next_event(in, &u.ev, sizeof u.buf);
	if (u.ev.wd != wd_file || !(u.ev.mask & IN_MODIFY))
		zdtm_fail("writing the file gave wd %d mask %#x", u.ev.wd, u.ev.mask);
	zdtm_pass();
}
