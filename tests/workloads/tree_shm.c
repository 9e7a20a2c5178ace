/*
 * MAP_SHARED anonymous memory shared by a parent and its child: the child
 * filled every page with a pattern and keeps incrementing a counter in it;
 * the parent reads both. At SIGTERM the parent checks the pattern and that
 * the counter still moves (the child writes into the very memory the
 * parent reads), then stops the child.
 */
#include "zdtm.h"
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define PAGES 16
#define PAGE 4096

int main(void)
{
	volatile uint64_t *mem;
	uint64_t before;
	pid_t pid;
	int status;

	zdtm_init();
	mem = mmap(NULL, PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		zdtm_fail("mmap: %s", strerror(errno));
	pid = fork();
	if (pid < 0)
		zdtm_fail("fork: %s", strerror(errno));
	if (pid == 0) {
		signal(SIGTERM, SIG_DFL);
		for (int p = 1; p < PAGES; p++)
			for (int i = 0; i < PAGE / 8; i++)
				mem[p * PAGE / 8 + i] = (uint64_t)p * 1000003u + i;
		mem[1] = 1; /* filled */
		for (;;) {
			mem[0]++;
			zdtm_sleep_ms(1);
		}
	}
	while (mem[1] != 1)
		zdtm_sleep_ms(5);
	zdtm_ready();
	zdtm_wait_stop();
	for (int p = 1; p < PAGES; p++)
		for (int i = 0; i < PAGE / 8; i++)
			if (mem[p * PAGE / 8 + i] != (uint64_t)p * 1000003u + i)
				zdtm_fail("word %d of page %d is %llu", i, p,
					  (unsigned long long)mem[p * PAGE / 8 + i]);
	before = mem[0];
	for (int i = 0; i < 200 && mem[0] == before; i++)
		zdtm_sleep_ms(10);
	if (mem[0] == before)
		zdtm_fail("the child's counter stays at %llu: the memory is not shared",
			  (unsigned long long)before);
	kill(pid, SIGKILL);
	if (waitpid(pid, &status, 0) != pid)
		zdtm_fail("waitpid: %s", strerror(errno));
	zdtm_pass();
}
