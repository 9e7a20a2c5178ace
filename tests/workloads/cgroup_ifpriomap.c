/*
 * cgroup_ifpriomap: a controller's multi-line setting restored in a
 * cgroup the restore makes (as CRIU's zdtm cgroup_ifpriomap). Mounts the
 * cgroup v1 net_prio hierarchy on argv[1]/np, makes the cgroup
 * /ferry_prio_PID there, joins it and sets loopback's priority in its
 * net_prio.ifpriomap. The restore's root of that hierarchy is
 * /ferry_prio_PID_moved, so the restored process is in a cgroup made
 * anew, /ferry_prio_PID_moved/ferry_prio_PID. At SIGTERM it checks its
 * cgroup (that one once restored, its start time changed; the first when
 * never checkpointed) and lo's priority there; then it leaves and removes
 * its cgroups, unmounts the hierarchy and removes the mount point.
 */
#include "zdtm.h"
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>

static char mnt[2048];

/* Writes `value` to file `file` of cgroup `cgroup` (from the root). */
static void write_cgroup(const char *cgroup, const char *file, const char *value)
{
	char path[4096];
	int fd, n = (int)strlen(value);

	snprintf(path, sizeof path, "%s%s/%s", mnt, cgroup, file);
	fd = open(path, O_WRONLY);
	if (fd < 0 || write(fd, value, (size_t)n) != n)
		zdtm_fail("writing %s to %s: %s", value, path, strerror(errno));
	close(fd);
}

/* Our cgroup in the net_prio hierarchy, "" when not found. */
static const char *own_cgroup(char *buf, size_t size)
{
	char text[4096], *line, *end;

	buf[0] = 0;
	if (zdtm_read_file("/proc/self/cgroup", text, sizeof text) < 0)
		return buf;
	for (line = text; line && *line; line = end ? end + 1 : NULL) {
		char *controllers = strchr(line, ':'), *path;

		end = strchr(line, '\n');
		if (!controllers || !(path = strchr(controllers + 1, ':')))
			continue;
		controllers++;
		if ((size_t)(path - controllers) == strlen("net_prio")
		    && !strncmp(controllers, "net_prio", strlen("net_prio"))) {
			path++;
			snprintf(buf, size, "%.*s", (int)strcspn(path, "\n"), path);
			break;
		}
	}
	return buf;
}

/* lo's priority in cgroup `cgroup`, -1 when it cannot be read. */
static long lo_prio(const char *cgroup)
{
	char path[4096], text[8192], *line;

	snprintf(path, sizeof path, "%s%s/net_prio.ifpriomap", mnt, cgroup);
	if (zdtm_read_file(path, text, sizeof text) < 0)
		return -1;
	if (!strncmp(text, "lo ", 3))
		return strtol(text + 3, NULL, 10);
	line = strstr(text, "\nlo ");
	return line ? strtol(line + 4, NULL, 10) : -1;
}

static void remove_cgroup(const char *cgroup)
{
	char dir[4096];

	snprintf(dir, sizeof dir, "%s%s", mnt, cgroup);
	for (int n = 0; rmdir(dir) && errno == EBUSY && n < 500; n++)
		zdtm_sleep_ms(10);
}

int main(int argc, char **argv)
{
	char cgroup[128], moved[256], now[256], value[64], path[4096];
	unsigned long long started;
	const char *why = NULL;
	long prio, want;
	int restored;

	zdtm_init();
	if (argc < 2)
		zdtm_fail("usage: cgroup_ifpriomap DIR");
	snprintf(mnt, sizeof mnt, "%s/np", argv[1]);
	snprintf(cgroup, sizeof cgroup, "/ferry_prio_%d", getpid());
	snprintf(moved, sizeof moved, "/ferry_prio_%d_moved%s", getpid(), cgroup);
	want = 1000 + getpid() % 100000;
	if (mkdir(argv[1], 0755) && errno != EEXIST)
		zdtm_fail("mkdir %s: %s", argv[1], strerror(errno));
	if (mkdir(mnt, 0755) || mount("none", mnt, "cgroup", 0, "net_prio"))
		zdtm_fail("mounting the net_prio hierarchy on %s: %s", mnt, strerror(errno));
	snprintf(path, sizeof path, "%s%s", mnt, cgroup);
	if (mkdir(path, 0755))
		zdtm_fail("mkdir %s: %s", path, strerror(errno));
	snprintf(value, sizeof value, "%d", getpid());
	write_cgroup(cgroup, "cgroup.procs", value);
	snprintf(value, sizeof value, "lo %ld", want);
	write_cgroup(cgroup, "net_prio.ifpriomap", value);
	started = zdtm_start_time();
	zdtm_ready();
	zdtm_wait_stop();

	restored = zdtm_start_time() != started;
	own_cgroup(now, sizeof now);
	prio = lo_prio(now);
	if (strcmp(now, restored ? moved : cgroup))
		why = "the process is not in the cgroup it should be";
	else if (prio != want)
		why = "lo's priority in net_prio.ifpriomap was not restored";

	/* Clean up before judging. */
	snprintf(value, sizeof value, "%d", getpid());
	write_cgroup("", "cgroup.procs", value);
	remove_cgroup(moved);
	*strrchr(moved, '/') = 0;
	remove_cgroup(moved);
	remove_cgroup(cgroup);
	if (umount(mnt) || rmdir(mnt))
		zdtm_fail("unmounting and removing %s: %s", mnt, strerror(errno));
	if (why)
		zdtm_fail("%s (cgroup '%s', lo's priority %ld, expected %ld, restored: %d)", why, now,
			  prio, want, restored);
	zdtm_pass();
}
