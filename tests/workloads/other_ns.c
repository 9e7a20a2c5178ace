/*
 * Refusal: a process in a UTS namespace of its own (with its own hostname),
 * as a process inside a container is. Checkpoint must refuse it, naming the
 * namespace, without disturbing it; at SIGTERM its hostname is intact.
 */
#include "zdtm.h"
#include <sched.h>

int main(void)
{
	char name[64];

	zdtm_init();
	if (unshare(CLONE_NEWUTS) || sethostname("ferry-ns-test", 13))
		zdtm_fail("unshare(CLONE_NEWUTS): %s", strerror(errno));
	zdtm_ready();
	zdtm_wait_stop();
	if (gethostname(name, sizeof name) || strcmp(name, "ferry-ns-test"))
		zdtm_fail("the hostname changed to %s", name);
	zdtm_pass();
}
