/*
 * fanotify (CRIU's zdtm fanotify00): a group made with FAN_NONBLOCK,
 * FAN_CLASS_NOTIF and FAN_UNLIMITED_QUEUE, events opened O_RDONLY |
 * O_LARGEFILE, with an inode mark on a file in the test's directory
 * (modify, open, close) and a mount mark on the mount holding it (open
 * and close of directories too, modify and access ignored, surviving
 * modification). At SIGTERM: the group's fdinfo lists the same flags and
 * marks (compared as a set: the order of marks may change), it is still
 * O_NONBLOCK, and opening the file queues an event whose fd is that file.
 */
#include "zdtm.h"
#include <fcntl.h>
#include <limits.h>
#include <sys/fanotify.h>
#include <sys/stat.h>

#define LINES 8

static int read_marks(int fd, char lines[LINES][256])
{
	char path[64], buf[4096], *line, *save;
	int n = 0;

	snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
	if (zdtm_read_file(path, buf, sizeof buf) < 0)
		zdtm_fail("reading %s: %s", path, strerror(errno));
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		if (!strncmp(line, "fanotify ", 9) && n < LINES)
			snprintf(lines[n++], 256, "%s", line);
	return n;
}

int main(int argc, char **argv)
{
	char file[PATH_MAX], link[PATH_MAX], fdpath[64], before[LINES][256], after[LINES][256];
	char events[4096];
	struct fanotify_event_metadata *ev;
	int group, fd, nbefore, nafter, found = 0;
	ssize_t len;

	zdtm_init();
	if (argc < 2)
		zdtm_fail("usage: fanotify DIR");
	mkdir(argv[1], 0755);
	snprintf(file, sizeof file, "%s/watched", argv[1]);
	fd = open(file, O_CREAT | O_RDWR | O_TRUNC, 0644);
	if (fd < 0)
		zdtm_fail("creating %s: %s", file, strerror(errno));
	close(fd);
	group = fanotify_init(FAN_NONBLOCK | FAN_CLASS_NOTIF | FAN_UNLIMITED_QUEUE,
			      O_RDONLY | O_LARGEFILE);
	if (group < 0)
		zdtm_fail("fanotify_init: %s", strerror(errno));
	if (fanotify_mark(group, FAN_MARK_ADD, FAN_MODIFY | FAN_OPEN | FAN_CLOSE, AT_FDCWD, file) ||
	    fanotify_mark(group, FAN_MARK_ADD | FAN_MARK_MOUNT, FAN_ONDIR | FAN_OPEN | FAN_CLOSE,
			  AT_FDCWD, argv[1]) ||
	    fanotify_mark(group,
			  FAN_MARK_ADD | FAN_MARK_MOUNT | FAN_MARK_IGNORED_MASK |
				  FAN_MARK_IGNORED_SURV_MODIFY,
			  FAN_MODIFY | FAN_ACCESS, AT_FDCWD, argv[1]))
		zdtm_fail("fanotify_mark: %s", strerror(errno));
	nbefore = read_marks(group, before);
	if (nbefore != 3)
		zdtm_fail("%d fanotify lines in fdinfo before, expected 3", nbefore);
	zdtm_ready();
	zdtm_wait_stop();

	nafter = read_marks(group, after);
	if (nafter != nbefore)
		zdtm_fail("%d fanotify lines in fdinfo, expected %d", nafter, nbefore);
	for (int i = 0; i < nbefore; i++) {
		int same = 0;
		for (int j = 0; j < nafter; j++)
			same |= !strcmp(before[i], after[j]);
		if (!same)
			zdtm_fail("fdinfo line lost: %s", before[i]);
	}
	if (!(fcntl(group, F_GETFL) & O_NONBLOCK))
		zdtm_fail("the group is no longer O_NONBLOCK");
	fd = open(file, O_RDONLY);
	if (fd < 0)
		zdtm_fail("opening %s: %s", file, strerror(errno));
	close(fd);
	/* The mount mark queues every open and close on the mount, by any
	 * process of the machine: read until the queue holds no more (ours
	 * comes after whatever others did since the marks were made). */
	for (int reads = 0; !found; reads++) {
		len = read(group, events, sizeof events);
		if (len <= 0) {
			if (reads == 0)
				zdtm_fail("no event queued: read returned %zd (%s)", len,
					  strerror(errno));
			break;
		}
		for (ev = (void *)events; FAN_EVENT_OK(ev, len); ev = FAN_EVENT_NEXT(ev, len)) {
			if (ev->fd < 0)
				continue;
			snprintf(fdpath, sizeof fdpath, "/proc/self/fd/%d", ev->fd);
			memset(link, 0, sizeof link);
			if (readlink(fdpath, link, sizeof link - 1) > 0 && !strcmp(link, file))
				found = 1;
			close(ev->fd);
		}
	}
	if (!found)
		zdtm_fail("no event names %s", file);
	zdtm_pass();
}
