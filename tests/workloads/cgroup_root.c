/*
 * cgroup_root: checkpoint and restore with cgroup roots (CRIU's
 * --cgroup-root, as its zdtm cgroup02). Mounts two named cgroup v1
 * hierarchies of its own on argv[1]/a (name=ferry_cgra_PID) and argv[1]/b
 * (name=ferry_cgrb_PID) and joins /prefix/oldroot in both. In a, /prefix
 * gets mode 0777 through an fd kept open on it, and an empty cgroup
 * /prefix/empty mode 0750 (the checkpoint's root of a is /prefix, so every
 * cgroup below it is recorded). In b, /prefix gets mode 0700 and the empty
 * cgroup /prefix/oldroot/empty mode 0750; the restore's root of b is
 * /newroot. At SIGTERM it checks the fd still names a's /prefix, the
 * modes, and its cgroups: /prefix/oldroot in a, and in b
 * /newroot/prefix/oldroot (with /newroot/prefix 0700 and its empty
 * cgroup) once restored (its start time changed), /prefix/oldroot when
 * never checkpointed. Then it leaves and removes its cgroups, unmounts
 * both hierarchies (they go away) and removes the mount points.
 */
#include "zdtm.h"
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>

static char base[2048];
static char names[2][64];
static const char *const mounts[2] = {"a", "b"};

/* dir/sub of hierarchy i. */
static void path_of(char *buf, size_t size, int i, const char *sub)
{
	snprintf(buf, size, "%s/%s%s%s", base, mounts[i], *sub ? "/" : "", sub);
}

static void make_cgroup(int i, const char *sub, mode_t mode)
{
	char dir[4096];

	path_of(dir, sizeof dir, i, sub);
	if (mkdir(dir, 0755) || chmod(dir, mode))
		zdtm_fail("making %s: %s", dir, strerror(errno));
}

static void join(int i, const char *sub)
{
	char path[4096], buf[32];
	int fd, n;

	snprintf(buf, sizeof buf, "%d", getpid());
	path_of(path, sizeof path, i, sub);
	strncat(path, "/cgroup.procs", sizeof path - strlen(path) - 1);
	fd = open(path, O_WRONLY);
	n = (int)strlen(buf);
	if (fd < 0 || write(fd, buf, (size_t)n) != n)
		zdtm_fail("joining %s: %s", path, strerror(errno));
	close(fd);
}

/* Our cgroup in hierarchy i, "" when not found. */
static const char *own_cgroup(int i, char *buf, size_t size)
{
	char text[4096], key[96], *line;

	buf[0] = 0;
	if (zdtm_read_file("/proc/self/cgroup", text, sizeof text) < 0)
		return buf;
	snprintf(key, sizeof key, ":name=%s:", names[i]);
	line = strstr(text, key);
	if (line) {
		line += strlen(key);
		snprintf(buf, size, "%.*s", (int)strcspn(line, "\n"), line);
	}
	return buf;
}

/* Whether cgroup sub of hierarchy i is a directory with mode `mode`. */
static int has_mode(int i, const char *sub, mode_t mode)
{
	char dir[4096];
	struct stat st;

	path_of(dir, sizeof dir, i, sub);
	return !stat(dir, &st) && S_ISDIR(st.st_mode) && (st.st_mode & 07777) == mode;
}

/* Removes the cgroups, deepest first (missing ones are not an error). */
static void remove_cgroups(int i, const char *const *subs)
{
	char dir[4096];

	for (; *subs; subs++) {
		path_of(dir, sizeof dir, i, *subs);
		for (int n = 0; rmdir(dir) && errno == EBUSY && n < 500; n++)
			zdtm_sleep_ms(10);
	}
}

/* Whether hierarchy i still exists (every process lists it). */
static int hierarchy_exists(int i)
{
	char buf[256];

	return own_cgroup(i, buf, sizeof buf)[0] != 0;
}

int main(int argc, char **argv)
{
	static const char *const a_cgroups[] = {"prefix/empty", "prefix/oldroot", "prefix", NULL};
	static const char *const b_cgroups[] = {
		"prefix/oldroot/empty", "prefix/oldroot", "prefix", "newroot/prefix/oldroot/empty",
		"newroot/prefix/oldroot", "newroot/prefix", "newroot", NULL};
	char dir[4096], buf[256], a_cgroup[256], b_cgroup[256];
	const char *why = NULL;
	unsigned long long started;
	struct stat fd_st, dir_st;
	int fd, restored;

	zdtm_init();
	if (argc < 2)
		zdtm_fail("usage: cgroup_root DIR");
	snprintf(names[0], sizeof names[0], "ferry_cgra_%d", getpid());
	snprintf(names[1], sizeof names[1], "ferry_cgrb_%d", getpid());
	snprintf(base, sizeof base, "%s", argv[1]);
	if (mkdir(base, 0755) && errno != EEXIST)
		zdtm_fail("mkdir %s: %s", base, strerror(errno));
	for (int i = 0; i < 2; i++) {
		path_of(dir, sizeof dir, i, "");
		snprintf(buf, sizeof buf, "none,name=%s", names[i]);
		if (mkdir(dir, 0755) || mount("none", dir, "cgroup", 0, buf))
			zdtm_fail("mounting %s on %s: %s", buf, dir, strerror(errno));
		make_cgroup(i, "prefix", 0700);
		make_cgroup(i, "prefix/oldroot", 0755);
		join(i, "prefix/oldroot");
	}
	make_cgroup(0, "prefix/empty", 0750);
	make_cgroup(1, "prefix/oldroot/empty", 0750);
	path_of(dir, sizeof dir, 0, "prefix");
	fd = open(dir, O_DIRECTORY | O_RDONLY);
	if (fd < 0 || fchmod(fd, 0777))
		zdtm_fail("opening and chmod'ing %s: %s", dir, strerror(errno));
	started = zdtm_start_time();
	zdtm_ready();
	zdtm_wait_stop();

	restored = zdtm_start_time() != started;
	own_cgroup(0, a_cgroup, sizeof a_cgroup);
	own_cgroup(1, b_cgroup, sizeof b_cgroup);
	path_of(dir, sizeof dir, 0, "prefix");
	if (fstat(fd, &fd_st) || stat(dir, &dir_st) || fd_st.st_ino != dir_st.st_ino
	    || fd_st.st_dev != dir_st.st_dev)
		why = "the fd no longer names a's /prefix";
	else if ((fd_st.st_mode & 07777) != 0777)
		why = "a's /prefix lost its mode 0777";
	else if (!has_mode(0, "prefix/empty", 0750))
		why = "a's empty cgroup /prefix/empty is gone or lost its mode 0750";
	else if (strcmp(a_cgroup, "/prefix/oldroot"))
		why = "the process is not in a's /prefix/oldroot";
	else if (strcmp(b_cgroup, restored ? "/newroot/prefix/oldroot" : "/prefix/oldroot"))
		why = restored ? "the restored process is not in b's /newroot/prefix/oldroot"
			       : "the process is not in b's /prefix/oldroot";
	else if (restored && !has_mode(1, "newroot/prefix", 0700))
		why = "b's /newroot/prefix was not made with the mode 0700 of /prefix";
	else if (restored && !has_mode(1, "newroot/prefix/oldroot/empty", 0750))
		why = "b's empty cgroup was not made below /newroot with its mode 0750";
	close(fd);

	/* Clean up before judging: each hierarchy goes with its mount. */
	for (int i = 0; i < 2; i++)
		join(i, "");
	remove_cgroups(0, a_cgroups);
	remove_cgroups(1, b_cgroups);
	/* The removed cgroups are freed a moment later: until then an
	 * unmount would not end the hierarchy. */
	zdtm_sleep_ms(300);
	for (int i = 0; i < 2; i++) {
		path_of(dir, sizeof dir, i, "");
		if (umount(dir) || rmdir(dir))
			zdtm_fail("unmounting and removing %s: %s", dir, strerror(errno));
		for (int n = 0; hierarchy_exists(i) && n < 500; n++)
			zdtm_sleep_ms(10);
		if (hierarchy_exists(i))
			zdtm_fail("the hierarchy name=%s is still there after it was unmounted", names[i]);
	}
	if (why)
		zdtm_fail("%s (a: '%s', b: '%s', restored: %d)", why, a_cgroup, b_cgroup, restored);
	zdtm_pass();
}
