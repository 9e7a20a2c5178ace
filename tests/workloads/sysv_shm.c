/*
 * SysV shared memory (shmget/shmat) shared by a parent and its child.
 *
 * Segment A (1 MiB, mode 0640, a key of its own; with argument "removed":
 * IPC_PRIVATE and marked for removal): attached read-write by the parent,
 * inherited by the child, which fills pages 1..255 with a pattern and keeps
 * incrementing a counter in page 0; the child also attaches A a second time
 * with SHM_RDONLY and checks through it that it sees its own writes.
 * Segment B (10000 bytes, IPC_PRIVATE, marked for removal once attached by
 * both): filled by the parent before the fork.
 *
 * At SIGTERM the parent checks the pattern, that the counter still moves,
 * A's key, shmid, size and mode, B's contents and that it is still marked
 * for removal, and that the child's read-only attachment still cannot
 * become writable (no "mw" in its VmFlags); then removes A and stops the
 * child.
 */
#include "zdtm.h"
#include <stdint.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/wait.h>

#define PAGE 4096
#define A_SIZE (256 * PAGE)
#define B_SIZE 10000

/* A's words: counter, filled flag, read-only view error, its address. */
enum { COUNTER = 0, FILLED = 1, RO_ERROR = 2, RO_ADDR = 3 };

static void check_segment(int id, size_t size, int mode, int removed, const char *name)
{
	struct shmid_ds ds;

	if (shmctl(id, IPC_STAT, &ds))
		zdtm_fail("shmctl(%s %d, IPC_STAT): %s", name, id, strerror(errno));
	if (ds.shm_segsz != size)
		zdtm_fail("%s has %zu bytes, not %zu", name, (size_t)ds.shm_segsz, size);
	if ((ds.shm_perm.mode & 0777) != mode)
		zdtm_fail("%s has mode %o, not %o", name, ds.shm_perm.mode & 0777, mode);
	if (!!(ds.shm_perm.mode & SHM_DEST) != removed)
		zdtm_fail("%s is %smarked for removal", name, removed ? "not " : "");
}

/* Fails unless the mapping at addr in process pid lacks VM_MAYWRITE. */
static void check_read_only(pid_t pid, uintptr_t addr)
{
	static char smaps[1 << 20];
	char path[64], head[32], *at, *flags;

	snprintf(path, sizeof(path), "/proc/%d/smaps", pid);
	if (zdtm_read_file(path, smaps, sizeof(smaps)) < 0)
		zdtm_fail("read %s: %s", path, strerror(errno));
	snprintf(head, sizeof(head), "\n%lx-", (unsigned long)addr);
	at = strstr(smaps, head);
	if (!at)
		zdtm_fail("no mapping at %#lx in %s", (unsigned long)addr, path);
	flags = strstr(at, "VmFlags:");
	if (!flags)
		zdtm_fail("no VmFlags for %#lx in %s", (unsigned long)addr, path);
	*strchrnul(flags, '\n') = '\0';
	if (strstr(flags, " mw"))
		zdtm_fail("the SHM_RDONLY attachment at %#lx may become writable: %s",
			  (unsigned long)addr, flags);
}

int main(int argc, char **argv)
{
	int removed = argc > 2 && strcmp(argv[2], "removed") == 0;
	key_t key = removed ? IPC_PRIVATE : (key_t)(0x5f000000 | (getpid() & 0xffffff));
	volatile uint64_t *a, *ro;
	unsigned char *b;
	int a_id, b_id, status;
	uint64_t before;
	pid_t pid;

	zdtm_init();
	a_id = shmget(key, A_SIZE, IPC_CREAT | IPC_EXCL | 0640);
	if (a_id < 0)
		zdtm_fail("shmget(A, key %#x): %s", key, strerror(errno));
	b_id = shmget(IPC_PRIVATE, B_SIZE, IPC_CREAT | 0600);
	if (b_id < 0)
		zdtm_fail("shmget(B): %s", strerror(errno));
	a = shmat(a_id, NULL, 0);
	b = shmat(b_id, NULL, 0);
	if (a == (void *)-1 || b == (void *)-1)
		zdtm_fail("shmat: %s", strerror(errno));
	for (int i = 0; i < B_SIZE; i++)
		b[i] = (unsigned char)(i * 7 + 3);
	pid = fork();
	if (pid < 0)
		zdtm_fail("fork: %s", strerror(errno));
	if (pid == 0) {
		signal(SIGTERM, SIG_DFL);
		ro = shmat(a_id, NULL, SHM_RDONLY);
		if (ro == (void *)-1)
			zdtm_fail("shmat(SHM_RDONLY): %s", strerror(errno));
		for (int p = 1; p < A_SIZE / PAGE; p++)
			for (int i = 0; i < PAGE / 8; i++)
				a[p * PAGE / 8 + i] = (uint64_t)p * 1000003u + i;
		a[RO_ADDR] = (uintptr_t)ro;
		a[FILLED] = 1;
		for (;;) {
			a[COUNTER]++;
			if (ro[COUNTER] != a[COUNTER])
				a[RO_ERROR] = 1;
			zdtm_sleep_ms(1);
		}
	}
	while (a[FILLED] != 1)
		zdtm_sleep_ms(5);
	/* Both attach B now: marked for removal, it lives on until they detach. */
	if (shmctl(b_id, IPC_RMID, NULL))
		zdtm_fail("shmctl(B, IPC_RMID): %s", strerror(errno));
	if (removed && shmctl(a_id, IPC_RMID, NULL))
		zdtm_fail("shmctl(A, IPC_RMID): %s", strerror(errno));
	zdtm_ready();
	zdtm_wait_stop();

	for (int p = 1; p < A_SIZE / PAGE; p++)
		for (int i = 0; i < PAGE / 8; i++)
			if (a[p * PAGE / 8 + i] != (uint64_t)p * 1000003u + i)
				zdtm_fail("word %d of page %d of A is %llu", i, p,
					  (unsigned long long)a[p * PAGE / 8 + i]);
	before = a[COUNTER];
	for (int i = 0; i < 200 && a[COUNTER] == before; i++)
		zdtm_sleep_ms(10);
	if (a[COUNTER] == before)
		zdtm_fail("the child's counter stays at %llu: A is not shared",
			  (unsigned long long)before);
	if (a[RO_ERROR])
		zdtm_fail("the child's read-only attachment of A showed other data");
	check_segment(a_id, A_SIZE, 0640, removed, "A");
	if (!removed && shmget(key, 0, 0) != a_id)
		zdtm_fail("key %#x names shmid %d, not A's %d", key, shmget(key, 0, 0), a_id);
	for (int i = 0; i < B_SIZE; i++)
		if (b[i] != (unsigned char)(i * 7 + 3))
			zdtm_fail("byte %d of B is %u", i, b[i]);
	check_segment(b_id, B_SIZE, 0600, 1, "B");
	check_read_only(pid, (uintptr_t)a[RO_ADDR]);
	kill(pid, SIGKILL);
	if (waitpid(pid, &status, 0) != pid)
		zdtm_fail("waitpid: %s", strerror(errno));
	if (!removed && shmctl(a_id, IPC_RMID, NULL))
		zdtm_fail("shmctl(A, IPC_RMID): %s", strerror(errno));
	zdtm_pass();
}
