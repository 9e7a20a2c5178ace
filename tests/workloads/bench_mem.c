/*
 * Benchmark subject for scripts/bench.sh, not a test: touches argv[2] MiB of
 * heap with non-zero data, prints READY and sleeps until SIGTERM (then checks
 * the data and prints PASS). argv[1] (a directory) is unused.
 */
#include "zdtm.h"

int main(int argc, char **argv)
{
	size_t size, i;
	unsigned char *mem;

	if (argc < 3 || atol(argv[2]) <= 0)
		zdtm_fail("usage: bench_mem DIR MIB");
	size = (size_t)atol(argv[2]) << 20;
	zdtm_init();
	mem = malloc(size);
	if (!mem)
		zdtm_fail("malloc %zu bytes", size);
	for (i = 0; i < size; i++)
		mem[i] = (unsigned char)(i % 251 + 1);
	zdtm_ready();

	zdtm_wait_stop();

	for (i = 0; i < size; i++)
		if (mem[i] != (unsigned char)(i % 251 + 1))
			zdtm_fail("byte %zu changed", i);
	zdtm_pass();
}
