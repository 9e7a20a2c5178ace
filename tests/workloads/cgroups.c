/*
 * cgroups: mounts a named cgroup v1 hierarchy of its own
 * (name=ferry_cgroups_PID) on argv[1]/cg, moves itself into /proc_cg and a
 * second thread into /proc_cg/thread_cg, and makes an empty cgroup
 * /proc_cg/empty with mode 0750. At SIGTERM it checks each task's
 * /proc/thread-self/cgroup line for that hierarchy and that the empty
 * cgroup is there with its mode; then the thread ends, the process moves
 * back to the hierarchy's root, removes its cgroups, unmounts the
 * hierarchy (it goes away) and removes the mount point.
 */
#include "zdtm.h"
#include <fcntl.h>
#include <pthread.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>

static char mnt[2048], name[64];
static volatile int thread_moved, thread_stop;
static char thread_result[256];

static void write_file(const char *dir, const char *file, long value)
{
	char path[4096], buf[32];
	int fd, n;

	snprintf(path, sizeof path, "%s/%s", dir, file);
	n = snprintf(buf, sizeof buf, "%ld", value);
	fd = open(path, O_WRONLY);
	if (fd < 0 || write(fd, buf, (size_t)n) != n)
		zdtm_fail("writing %ld to %s: %s", value, path, strerror(errno));
	close(fd);
}

/* The calling thread's cgroup in our hierarchy, "" when not found. */
static const char *own_cgroup(char *buf, size_t size)
{
	char text[4096], key[96], *line;

	if (zdtm_read_file("/proc/thread-self/cgroup", text, sizeof text) < 0)
		return "";
	snprintf(key, sizeof key, ":name=%s:", name);
	line = strstr(text, key);
	if (!line)
		return "";
	line += strlen(key);
	snprintf(buf, size, "%.*s", (int)strcspn(line, "\n"), line);
	return buf;
}

/* Whether our hierarchy still exists (every process lists it). */
static int hierarchy_exists(void)
{
	char text[4096], key[96];

	snprintf(key, sizeof key, ":name=%s:", name);
	return zdtm_read_file("/proc/self/cgroup", text, sizeof text) >= 0 && strstr(text, key);
}

/* Removes a cgroup once its last task (a thread that just exited) left. */
static void remove_cgroup(const char *sub)
{
	char dir[4096];

	snprintf(dir, sizeof dir, "%s/%s", mnt, sub);
	for (int i = 0; rmdir(dir) && errno == EBUSY && i < 500; i++)
		zdtm_sleep_ms(10);
}

/*
 * Unmounts the hierarchy, which the kernel then ends (it has no cgroups
 * left), and waits until it is gone: a mount of the same name meanwhile
 * would make it again.
 */
static void remove_hierarchy(void)
{
	/* The removed cgroups are freed a moment later: until then an
	 * unmount would not end the hierarchy. */
	zdtm_sleep_ms(300);
	if (umount(mnt))
		zdtm_fail("unmounting %s: %s", mnt, strerror(errno));
	if (rmdir(mnt))
		zdtm_fail("removing %s: %s", mnt, strerror(errno));
	for (int i = 0; hierarchy_exists() && i < 500; i++)
		zdtm_sleep_ms(10);
	if (hierarchy_exists())
		zdtm_fail("the hierarchy name=%s is still there after it was unmounted", name);
}

static void *thread_main(void *arg)
{
	char dir[4096], buf[256];

	(void)arg;
	snprintf(dir, sizeof dir, "%s/proc_cg/thread_cg", mnt);
	write_file(dir, "tasks", syscall(SYS_gettid));
	thread_moved = 1;
	while (!thread_stop)
		zdtm_sleep_ms(10);
	snprintf(thread_result, sizeof thread_result, "%s", own_cgroup(buf, sizeof buf));
	return NULL;
}

int main(int argc, char **argv)
{
	char dir[4096], buf[256];
	pthread_t thread;
	struct stat st;
	int ok_thread;

	zdtm_init();
	if (argc < 2)
		zdtm_fail("usage: cgroups DIR");
	snprintf(name, sizeof name, "ferry_cgroups_%d", getpid());
	snprintf(mnt, sizeof mnt, "%s/cg", argv[1]);
	if (mkdir(argv[1], 0755) && errno != EEXIST)
		zdtm_fail("mkdir %s: %s", argv[1], strerror(errno));
	if (mkdir(mnt, 0755))
		zdtm_fail("mkdir %s: %s", mnt, strerror(errno));
	snprintf(buf, sizeof buf, "none,name=%s", name);
	if (mount("none", mnt, "cgroup", 0, buf))
		zdtm_fail("mount %s on %s: %s", buf, mnt, strerror(errno));
	snprintf(dir, sizeof dir, "%s/proc_cg", mnt);
	if (mkdir(dir, 0755))
		zdtm_fail("mkdir %s: %s", dir, strerror(errno));
	snprintf(dir, sizeof dir, "%s/proc_cg/thread_cg", mnt);
	if (mkdir(dir, 0755))
		zdtm_fail("mkdir %s: %s", dir, strerror(errno));
	snprintf(dir, sizeof dir, "%s/proc_cg/empty", mnt);
	if (mkdir(dir, 0750) || chmod(dir, 0750))
		zdtm_fail("mkdir %s: %s", dir, strerror(errno));
	snprintf(dir, sizeof dir, "%s/proc_cg", mnt);
	write_file(dir, "cgroup.procs", getpid());
	if (pthread_create(&thread, NULL, thread_main, NULL))
		zdtm_fail("pthread_create failed");
	while (!thread_moved)
		zdtm_sleep_ms(1);
	zdtm_ready();
	zdtm_wait_stop();

	thread_stop = 1;
	pthread_join(thread, NULL);
	ok_thread = !strcmp(thread_result, "/proc_cg/thread_cg");
	buf[0] = 0;
	own_cgroup(buf, sizeof buf);
	snprintf(dir, sizeof dir, "%s/proc_cg/empty", mnt);
	if (stat(dir, &st) || (st.st_mode & 07777) != 0750) {
		/* Cleaned up below all the same. */
		thread_result[0] = 0;
		ok_thread = -1;
	}
	/* Clean up before judging: the hierarchy goes with its mount. */
	write_file(mnt, "cgroup.procs", getpid());
	remove_cgroup("proc_cg/empty");
	remove_cgroup("proc_cg/thread_cg");
	remove_cgroup("proc_cg");
	remove_hierarchy();
	if (strcmp(buf, "/proc_cg"))
		zdtm_fail("the process is in cgroup '%s', not /proc_cg", buf);
	if (ok_thread < 0)
		zdtm_fail("the empty cgroup proc_cg/empty is gone or lost its mode 0750");
	if (!ok_thread)
		zdtm_fail("the thread is in cgroup '%s', not /proc_cg/thread_cg", thread_result);
	zdtm_pass();
}
