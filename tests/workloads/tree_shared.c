/*
 * Shared fd tables and fs information between processes of the tree (as
 * CRIU's clone_fs): child "files" was cloned with CLONE_FILES, child "fs"
 * with CLONE_FS, child "both" with both, child "none" forked plainly.
 * At SIGTERM: kcmp(KCMP_FILES/KCMP_FS) says each shares exactly what it
 * shared, an fd the parent opens now (at 50) appears in the CLONE_FILES
 * children only, and a chdir and umask of the parent reach the CLONE_FS
 * children only.
 */
#include "zdtm.h"
#include <fcntl.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define KCMP_FILES 2
#define KCMP_FS 3
#define CHILDREN 4

static const char *names[CHILDREN] = { "files", "fs", "both", "none" };
static const unsigned long flags[CHILDREN] = { CLONE_FILES, CLONE_FS, CLONE_FILES | CLONE_FS, 0 };

static pid_t spawn(unsigned long f)
{
	/* Without CLONE_VM and a stack, clone returns twice like fork. */
	pid_t pid = (pid_t)syscall(SYS_clone, f | SIGCHLD, 0, NULL, NULL, 0);

	if (pid < 0)
		zdtm_fail("clone(%#lx): %s", f, strerror(errno));
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		for (;;)
			pause();
	}
	return pid;
}

static int shares(pid_t child, int type)
{
	long r = syscall(SYS_kcmp, getpid(), child, type, 0, 0);

	if (r < 0)
		zdtm_fail("kcmp: %s", strerror(errno));
	return r == 0;
}

int main(void)
{
	pid_t child[CHILDREN];
	char path[64], buf[4096];
	int i;

	zdtm_init();
	if (chdir("/"))
		zdtm_fail("chdir: %s", strerror(errno));
	umask(022);
	for (i = 0; i < CHILDREN; i++)
		child[i] = spawn(flags[i]);
	zdtm_ready();
	zdtm_wait_stop();

	for (i = 0; i < CHILDREN; i++) {
		if (shares(child[i], KCMP_FILES) != !!(flags[i] & CLONE_FILES))
			zdtm_fail("child %s: fd table sharing changed", names[i]);
		if (shares(child[i], KCMP_FS) != !!(flags[i] & CLONE_FS))
			zdtm_fail("child %s: fs sharing changed", names[i]);
	}
	if (dup2(1, 50) != 50 || chdir("/tmp"))
		zdtm_fail("dup2/chdir: %s", strerror(errno));
	umask(077);
	for (i = 0; i < CHILDREN; i++) {
		struct stat st;
		ssize_t n;
		char *u;

		snprintf(path, sizeof path, "/proc/%d/fd/50", child[i]);
		if ((lstat(path, &st) == 0) != !!(flags[i] & CLONE_FILES))
			zdtm_fail("child %s: the parent's new fd 50 %s", names[i],
				  flags[i] & CLONE_FILES ? "is missing" : "appears");
		snprintf(path, sizeof path, "/proc/%d/cwd", child[i]);
		n = readlink(path, buf, sizeof buf - 1);
		buf[n < 0 ? 0 : n] = '\0';
		if (!strcmp(buf, "/tmp") != !!(flags[i] & CLONE_FS))
			zdtm_fail("child %s: cwd is %s", names[i], buf);
		snprintf(path, sizeof path, "/proc/%d/status", child[i]);
		if (zdtm_read_file(path, buf, sizeof buf) < 0 || !(u = strstr(buf, "Umask:")))
			zdtm_fail("child %s: no umask", names[i]);
		if ((strtol(u + 6, NULL, 8) == 077) != !!(flags[i] & CLONE_FS))
			zdtm_fail("child %s: umask %s", names[i], u + 6);
	}
	for (i = 0; i < CHILDREN; i++) {
		kill(child[i], SIGKILL);
		waitpid(child[i], NULL, 0);
	}
	zdtm_pass();
}
