/*
 * Privileges beyond user IDs, which Linux keeps per thread: the main thread
 * drops CAP_SYS_BOOT from its bounding set and CAP_NET_RAW from its
 * effective set, makes CAP_NET_BIND_SERVICE inheritable and ambient, sets
 * no_new_privs and SECBIT_KEEP_CAPS; a second thread drops CAP_KILL from
 * its effective set only. At SIGTERM each thread finds exactly its own
 * settings.
 */
#include "zdtm.h"
#include <linux/capability.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#define BIT(c) (1ULL << (c))

struct caps {
	unsigned long long eff, prm, inh;
};

static int get_caps(struct caps *c)
{
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];

	if (syscall(SYS_capget, &hdr, d))
		return -1;
	c->eff = d[0].effective | (unsigned long long)d[1].effective << 32;
	c->prm = d[0].permitted | (unsigned long long)d[1].permitted << 32;
	c->inh = d[0].inheritable | (unsigned long long)d[1].inheritable << 32;
	return 0;
}

static int set_caps(const struct caps *c)
{
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2] = {
		{ (unsigned)c->eff, (unsigned)c->prm, (unsigned)c->inh },
		{ (unsigned)(c->eff >> 32), (unsigned)(c->prm >> 32), (unsigned)(c->inh >> 32) },
	};

	return (int)syscall(SYS_capset, &hdr, d);
}

static struct caps main_want, worker_want;
static volatile int worker_ready;
static char worker_error[256];

static void *worker(void *arg)
{
	struct caps c;

	(void)arg;
	if (get_caps(&c)) {
		snprintf(worker_error, sizeof worker_error, "capget: %s", strerror(errno));
		worker_ready = 1;
		return NULL;
	}
	c.eff &= ~BIT(CAP_KILL);
	if (set_caps(&c))
		snprintf(worker_error, sizeof worker_error, "capset: %s", strerror(errno));
	worker_want = c;
	worker_ready = 1;
	while (!zdtm_stop)
		zdtm_sleep_ms(10);
	if (get_caps(&c))
		snprintf(worker_error, sizeof worker_error, "capget: %s", strerror(errno));
	else if (c.eff != worker_want.eff || c.prm != worker_want.prm || c.inh != worker_want.inh)
		snprintf(worker_error, sizeof worker_error,
			 "worker caps eff %llx prm %llx inh %llx, want %llx %llx %llx", c.eff, c.prm,
			 c.inh, worker_want.eff, worker_want.prm, worker_want.inh);
	else if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 0)
		snprintf(worker_error, sizeof worker_error, "the worker got no_new_privs");
	return NULL;
}

int main(void)
{
	struct caps c;
	pthread_t th;

	zdtm_init();
	if (pthread_create(&th, NULL, worker, NULL))
		zdtm_fail("pthread_create");
	while (!worker_ready)
		zdtm_sleep_ms(1);
	if (worker_error[0])
		zdtm_fail("%s", worker_error);
	if (get_caps(&c))
		zdtm_fail("capget: %s", strerror(errno));
	if (!(c.eff & BIT(CAP_NET_RAW)) || !(c.prm & BIT(CAP_NET_BIND_SERVICE)))
		zdtm_fail("run this as root");
	if (prctl(PR_CAPBSET_DROP, CAP_SYS_BOOT, 0, 0, 0))
		zdtm_fail("PR_CAPBSET_DROP: %s", strerror(errno));
	c.eff &= ~BIT(CAP_NET_RAW);
	c.inh |= BIT(CAP_NET_BIND_SERVICE);
	if (set_caps(&c))
		zdtm_fail("capset: %s", strerror(errno));
	main_want = c;
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_BIND_SERVICE, 0, 0))
		zdtm_fail("PR_CAP_AMBIENT_RAISE: %s", strerror(errno));
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		zdtm_fail("PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
	if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0))
		zdtm_fail("PR_SET_KEEPCAPS: %s", strerror(errno));
	zdtm_ready();
	zdtm_wait_stop();

	pthread_join(th, NULL);
	if (worker_error[0])
		zdtm_fail("%s", worker_error);
	if (get_caps(&c))
		zdtm_fail("capget: %s", strerror(errno));
	if (c.eff != main_want.eff || c.prm != main_want.prm || c.inh != main_want.inh)
		zdtm_fail("caps eff %llx prm %llx inh %llx, want %llx %llx %llx", c.eff, c.prm, c.inh,
			  main_want.eff, main_want.prm, main_want.inh);
	if (prctl(PR_CAPBSET_READ, CAP_SYS_BOOT, 0, 0, 0) != 0)
		zdtm_fail("CAP_SYS_BOOT is back in the bounding set");
	if (prctl(PR_CAPBSET_READ, CAP_NET_RAW, 0, 0, 0) != 1)
		zdtm_fail("CAP_NET_RAW left the bounding set");
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, CAP_NET_BIND_SERVICE, 0, 0) != 1)
		zdtm_fail("CAP_NET_BIND_SERVICE is no longer ambient");
	if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1)
		zdtm_fail("no_new_privs was lost");
	if (prctl(PR_GET_KEEPCAPS, 0, 0, 0, 0) != 1)
		zdtm_fail("SECBIT_KEEP_CAPS was lost");
	zdtm_pass();
}
