/*
 * Zombies outside their parent's process group: the root leads its own
 * group, and its children are Z1, a zombie that led its own session
 * (setsid, exit 3); Z2, a zombie that led its own group (exit 4) which a
 * live child M still belongs to; L, a live child leading its own group;
 * Z3, a zombie in L's group (exit 5). At SIGTERM every session and group
 * ID must be as it was, and the root reaps each zombie with its status.
 */
#include "zdtm.h"
#include <sys/wait.h>

/* Z2 exits once the root writes here (M has joined its group). */
static int go[2] = { -1, -1 };

static void idle(void)
{
	for (;;)
		pause();
}

/* Forks a child that runs `body(arg)`; fails the test if fork does. */
static pid_t spawn(void (*body)(int), int arg)
{
	pid_t pid = fork();

	if (pid < 0)
		zdtm_fail("fork: %s", strerror(errno));
	if (pid == 0) {
		signal(SIGTERM, SIG_DFL);
		close(go[1]);
		body(arg);
	}
	return pid;
}

static void session_leader(int unused)
{
	(void)unused;
	if (setsid() < 0)
		_exit(100);
	_exit(3);
}

/* Leads its group, then exits once the root says M has joined. */
static void group_leader_then_exit(int unused)
{
	char c;

	(void)unused;
	setpgid(0, 0);
	if (read(go[0], &c, 1) != 1)
		_exit(100);
	_exit(4);
}

static void live_leader(int unused)
{
	(void)unused;
	setpgid(0, 0);
	idle();
}

static void member(int group)
{
	setpgid(0, group);
	idle();
}

static void member_then_exit(int group)
{
	if (setpgid(0, group))
		_exit(100);
	_exit(5);
}

static void expect_ids(const char *name, pid_t pid, pid_t sid, pid_t pgid)
{
	if (getsid(pid) != sid || getpgid(pid) != pgid)
		zdtm_fail("%s %d: session %d group %d, want %d and %d", name, pid, getsid(pid),
			  getpgid(pid), sid, pgid);
}

static void reap(const char *name, pid_t pid, int code)
{
	int status;

	if (waitpid(pid, &status, 0) != pid)
		zdtm_fail("waitpid(%s %d): %s", name, pid, strerror(errno));
	if (!WIFEXITED(status) || WEXITSTATUS(status) != code)
		zdtm_fail("%s ended with status %#x, want exit code %d", name, status, code);
}

int main(void)
{
	pid_t z1, z2, z3, l, m, me, sid;

	zdtm_init();
	if (getpid() != getpgid(0) && setpgid(0, 0))
		zdtm_fail("setpgid: %s", strerror(errno));
	me = getpid();
	sid = getsid(0);
	if (pipe(go))
		zdtm_fail("pipe: %s", strerror(errno));
	z1 = spawn(session_leader, 0);
	z2 = spawn(group_leader_then_exit, 0);
	close(go[0]);
	go[0] = -1;
	setpgid(z2, z2);
	m = spawn(member, z2);
	setpgid(m, z2);
	while (getpgid(m) != z2)
		zdtm_sleep_ms(5);
	if (write(go[1], "", 1) != 1)
		zdtm_fail("write: %s", strerror(errno));
	close(go[1]);
	go[1] = -1;
	l = spawn(live_leader, 0);
	setpgid(l, l);
	z3 = spawn(member_then_exit, l);
	while (zdtm_state_of(z1) != 'Z' || zdtm_state_of(z2) != 'Z' || zdtm_state_of(z3) != 'Z')
		zdtm_sleep_ms(5);
	expect_ids("Z1", z1, z1, z1);
	expect_ids("Z2", z2, sid, z2);
	expect_ids("Z3", z3, sid, l);
	zdtm_ready();
	zdtm_wait_stop();
	/* The root's session is outside the tree: a restore keeps the restorer's. */
	sid = getsid(0);
	if (zdtm_state_of(z1) != 'Z' || zdtm_state_of(z2) != 'Z' || zdtm_state_of(z3) != 'Z')
		zdtm_fail("the children are in states %c %c %c, not zombies", zdtm_state_of(z1),
			  zdtm_state_of(z2), zdtm_state_of(z3));
	expect_ids("the root", me, sid, me);
	expect_ids("Z1", z1, z1, z1);
	expect_ids("Z2", z2, sid, z2);
	expect_ids("M", m, sid, z2);
	expect_ids("L", l, sid, l);
	expect_ids("Z3", z3, sid, l);
	reap("Z1", z1, 3);
	reap("Z2", z2, 4);
	reap("Z3", z3, 5);
	kill(m, SIGKILL);
	kill(l, SIGKILL);
	if (waitpid(m, NULL, 0) != m || waitpid(l, NULL, 0) != l)
		zdtm_fail("waitpid(M, L): %s", strerror(errno));
	zdtm_pass();
}
