/*
 * membarrier() registrations of the address space: private expedited,
 * global expedited and private expedited sync-core. At SIGTERM: the
 * expedited commands registered for still work (they fail with EPERM
 * unregistered), and MEMBARRIER_CMD_GET_REGISTRATIONS reports the same
 * registrations as before the checkpoint.
 */
#include "zdtm.h"
#include <linux/membarrier.h>
#include <sys/syscall.h>

#define GET_REGISTRATIONS (1 << 9)

static long membarrier(int cmd)
{
	return syscall(SYS_membarrier, cmd, 0, 0);
}

int main(void)
{
	static const int cmds[][2] = {
		{ MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, MEMBARRIER_CMD_PRIVATE_EXPEDITED },
		{ MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, MEMBARRIER_CMD_GLOBAL_EXPEDITED },
		{ MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE,
		  MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE },
	};
	long before, after;

	zdtm_init();
	for (unsigned i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
		if (membarrier(cmds[i][0]))
			zdtm_fail("registering %#x: %s", cmds[i][0], strerror(errno));
	before = membarrier(GET_REGISTRATIONS);
	if (before < 0)
		zdtm_fail("GET_REGISTRATIONS: %s", strerror(errno));
	zdtm_ready();
	zdtm_wait_stop();

	for (unsigned i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
		if (membarrier(cmds[i][1]))
			zdtm_fail("membarrier(%#x): %s", cmds[i][1], strerror(errno));
	after = membarrier(GET_REGISTRATIONS);
	if (after != before)
		zdtm_fail("registrations %#lx, %#lx before the checkpoint", after, before);
	zdtm_pass();
}
