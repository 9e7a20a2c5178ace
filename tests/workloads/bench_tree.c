/*
 * Benchmark subject for scripts/bench.sh, not a test: a tree of argv[2]
 * processes (the root and argv[2] - 1 children), each touching argv[3] MiB
 * of heap with non-zero data; prints READY and sleeps until SIGTERM. Then
 * every child checks its data and exits 0, and the root prints PASS once
 * it reaped them all. argv[1] (a directory) is unused.
 */
#include "zdtm.h"
#include <sys/wait.h>

static unsigned char *fill(size_t size, unsigned seed)
{
	unsigned char *mem = malloc(size);

	if (!mem)
		zdtm_fail("malloc %zu bytes", size);
	for (size_t i = 0; i < size; i++)
		mem[i] = (unsigned char)((i + seed) % 251 + 1);
	return mem;
}

static int intact(const unsigned char *mem, size_t size, unsigned seed)
{
	for (size_t i = 0; i < size; i++)
		if (mem[i] != (unsigned char)((i + seed) % 251 + 1))
			return 0;
	return 1;
}

int main(int argc, char **argv)
{
	int procs, ready[2], status;
	size_t size;
	pid_t *kids;
	char c;

	if (argc < 4 || atoi(argv[2]) < 1 || atol(argv[3]) <= 0)
		zdtm_fail("usage: bench_tree DIR PROCESSES MIB");
	procs = atoi(argv[2]);
	size = (size_t)atol(argv[3]) << 20;
	zdtm_init();
	kids = calloc((size_t)procs, sizeof *kids);
	if (!kids || pipe(ready))
		zdtm_fail("setup: %s", strerror(errno));
	for (int k = 1; k < procs; k++) {
		kids[k] = fork();
		if (kids[k] < 0)
			zdtm_fail("fork: %s", strerror(errno));
		if (kids[k] == 0) {
			unsigned char *mem = fill(size, (unsigned)k);
			close(ready[0]);
			if (write(ready[1], "r", 1) != 1)
				_exit(3);
			close(ready[1]);
			zdtm_wait_stop();
			_exit(intact(mem, size, (unsigned)k) ? 0 : 1);
		}
	}
	close(ready[1]);
	unsigned char *mem = fill(size, 0);
	for (int k = 1; k < procs; k++)
		if (read(ready[0], &c, 1) != 1)
			zdtm_fail("a child did not get ready");
	zdtm_ready();
	zdtm_wait_stop();
	for (int k = 1; k < procs; k++)
		kill(kids[k], SIGTERM);
	for (int k = 1; k < procs; k++)
		if (waitpid(kids[k], &status, 0) != kids[k] || !WIFEXITED(status) ||
		    WEXITSTATUS(status))
			zdtm_fail("child %d ended with status %#x", kids[k], status);
	if (!intact(mem, size, 0))
		zdtm_fail("the root's memory changed");
	zdtm_pass();
}
