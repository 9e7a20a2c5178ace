/*
 * A shared anonymous object of 8 pages, each holding its number, mapped
 * whole by a child, while its parent keeps only pages 2-5 of it (it
 * unmapped the rest after the fork, and made page 3 read-only: three
 * mappings of one object at offsets), so the child maps more of the
 * object than the parent. The child marked pages 0 and 7, which only it
 * maps. At SIGTERM the parent writes into page 4 and wakes the child,
 * which checks every page, sees the parent's write and writes into page
 * 5, which the parent must then see: one object, not copies.
 */
#include "zdtm.h"
#include <sys/mman.h>
#include <sys/wait.h>

#define PAGES 8

static volatile sig_atomic_t woken;

static void on_usr1(int sig)
{
	(void)sig;
	woken = 1;
}

static int child(char *m, long page, int ready)
{
	m[0 * page + 1] = 'c';
	m[7 * page + 1] = 'c';
	if (write(ready, "r", 1) != 1)
		return 10;
	while (!woken)
		zdtm_sleep_ms(10);
	for (int i = 0; i < PAGES; i++)
		if (m[i * page + 2] != (char)('0' + i))
			return 11 + i;
	if (m[1] != 'c' || m[7 * page + 1] != 'c')
		return 20;
	if (m[4 * page] != 'P')
		return 21;
	m[5 * page] = 'C';
	return 0;
}

int main(void)
{
	long page = sysconf(_SC_PAGESIZE);
	int ready[2], status;
	char *m, c;
	pid_t pid;

	zdtm_init();
	m = mmap(NULL, PAGES * page, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED || pipe(ready))
		zdtm_fail("mmap: %s", strerror(errno));
	for (int i = 0; i < PAGES; i++)
		m[i * page + 2] = (char)('0' + i);
	signal(SIGUSR1, on_usr1);
	pid = fork();
	if (pid < 0)
		zdtm_fail("fork: %s", strerror(errno));
	if (pid == 0) {
		signal(SIGTERM, SIG_DFL);
		_exit(child(m, page, ready[1]));
	}
	if (read(ready[0], &c, 1) != 1)
		zdtm_fail("the child did not start");
	if (munmap(m, 2 * page) || munmap(m + 6 * page, 2 * page) ||
	    mprotect(m + 3 * page, page, PROT_READ))
		zdtm_fail("munmap: %s", strerror(errno));
	zdtm_ready();
	zdtm_wait_stop();

	for (int i = 2; i < 6; i++)
		if (m[i * page + 2] != (char)('0' + i))
			zdtm_fail("page %d holds %c", i, m[i * page + 2]);
	m[4 * page] = 'P';
	kill(pid, SIGUSR1);
	if (waitpid(pid, &status, 0) != pid)
		zdtm_fail("waitpid: %s", strerror(errno));
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		zdtm_fail("the child's check %d failed (status %#x)", WEXITSTATUS(status), status);
	if (m[5 * page] != 'C')
		zdtm_fail("the child's write did not reach the parent");
	if (mprotect(m + 3 * page, page, PROT_READ | PROT_WRITE))
		zdtm_fail("page 3 cannot be made writable again: %s", strerror(errno));
	zdtm_pass();
}
