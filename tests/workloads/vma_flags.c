/*
 * VMA flags that madvise and mlock set: a mapping each locked (mlock:
 * "lo"), locked on fault (mlock2 MLOCK_ONFAULT: "lo lf"), a locked
 * MAP_SHARED mapping of a memfd (its fd kept open), read
 * sequentially ("sr"), randomly ("rr"), mergeable by KSM ("mg"), not
 * copied on fork ("dc") and not dumped ("dd"), each with a pattern in it.
 * At SIGTERM every mapping must still span its range in /proc/self/smaps
 * with its flags, and hold its pattern.
 */
#include "zdtm.h"
#include <sys/mman.h>

#ifndef MLOCK_ONFAULT
#define MLOCK_ONFAULT 1
#endif

#define PAGES 8
#define LEN (PAGES * 4096UL)

struct area {
	const char *name;
	const char *flags; /* codes that must be in VmFlags */
	int advice;	   /* -1: none */
	int lock;	   /* 0: none, 1: mlock, 2: mlock2(MLOCK_ONFAULT) */
	int memfd;	   /* a shared mapping of a memfd, not anonymous memory */
	char *addr;
};

static struct area areas[] = {
	{ "locked", "lo", -1, 1, 0, NULL },
	{ "locked on fault", "lo lf", -1, 2, 0, NULL },
	{ "locked memfd", "lo sh", -1, 1, 1, NULL },
	{ "sequential", "sr", MADV_SEQUENTIAL, 0, 0, NULL },
	{ "random", "rr", MADV_RANDOM, 0, 0, NULL },
	{ "mergeable", "mg", MADV_MERGEABLE, 0, 0, NULL },
	{ "dontfork", "dc", MADV_DONTFORK, 0, 0, NULL },
	{ "dontdump", "dd", MADV_DONTDUMP, 0, 0, NULL },
};

#define NAREAS (sizeof areas / sizeof areas[0])

/* Whether the space-separated list `list` holds the two-letter `code`. */
static int has_code(const char *list, const char *code)
{
	for (const char *p = list; (p = strstr(p, code)) != NULL; p += 2) {
		if ((p == list || p[-1] == ' ') && (p[2] == ' ' || p[2] == '\0' || p[2] == '\n'))
			return 1;
	}
	return 0;
}

/*
 * Checks that a mapping spans exactly [addr, addr + LEN) in smaps and that
 * its VmFlags hold every code of `flags`; returns a reason or NULL.
 */
static const char *check_smaps(const char *smaps, const struct area *a, char *why, size_t size)
{
	char head[64];
	const char *line, *vmflags, *end;
	char codes[8];

	snprintf(head, sizeof head, "%lx-%lx ", (unsigned long)a->addr,
		 (unsigned long)a->addr + LEN);
	line = strstr(smaps, head);
	if (!line || (line != smaps && line[-1] != '\n')) {
		snprintf(why, size, "no mapping spans %s", head);
		return why;
	}
	vmflags = strstr(line, "VmFlags:");
	if (!vmflags)
		return "no VmFlags line";
	end = strchr(vmflags, '\n');
	for (const char *f = a->flags; *f; f += (f[2] ? 3 : 2)) {
		char list[256];
		size_t n = end ? (size_t)(end - vmflags) : strlen(vmflags);

		if (n >= sizeof list)
			n = sizeof list - 1;
		memcpy(list, vmflags + 8, n - 8);
		list[n - 8] = '\0';
		memcpy(codes, f, 2);
		codes[2] = '\0';
		if (!has_code(list, codes)) {
			snprintf(why, size, "VmFlags '%s' lack %s", list, codes);
			return why;
		}
	}
	return NULL;
}

static void check_all(const char *when)
{
	static char smaps[1 << 20];
	char why[512];

	if (zdtm_read_file("/proc/self/smaps", smaps, sizeof smaps) < 0)
		zdtm_fail("%s: reading smaps: %s", when, strerror(errno));
	for (size_t i = 0; i < NAREAS; i++) {
		const char *bad = check_smaps(smaps, &areas[i], why, sizeof why);

		if (bad)
			zdtm_fail("%s: the %s mapping: %s", when, areas[i].name, bad);
		for (unsigned long off = 0; off < LEN; off += 4096) {
			if (areas[i].addr[off] != (char)(i * 16 + off / 4096))
				zdtm_fail("%s: the %s mapping lost its pattern at page %lu",
					  when, areas[i].name, off / 4096);
		}
	}
}

int main(void)
{
	zdtm_init();
	for (size_t i = 0; i < NAREAS; i++) {
		struct area *a = &areas[i];

		/* A guard page on each side keeps the mappings apart. */
		char *base = mmap(NULL, LEN + 2 * 4096, PROT_NONE,
				  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (base == MAP_FAILED)
			zdtm_fail("mmap: %s", strerror(errno));
		int fd = -1;

		if (a->memfd) {
			fd = memfd_create("vma-flags", 0);
			if (fd < 0 || ftruncate(fd, LEN))
				zdtm_fail("memfd: %s", strerror(errno));
		}
		a->addr = mmap(base + 4096, LEN, PROT_READ | PROT_WRITE,
			       MAP_FIXED | (a->memfd ? MAP_SHARED : MAP_PRIVATE | MAP_ANONYMOUS),
			       fd, 0);
		if (a->addr == MAP_FAILED)
			zdtm_fail("mmap: %s", strerror(errno));
		for (unsigned long off = 0; off < LEN; off += 4096)
			a->addr[off] = (char)(i * 16 + off / 4096);
		if (a->advice >= 0 && madvise(a->addr, LEN, a->advice))
			zdtm_fail("madvise(%s): %s", a->name, strerror(errno));
		if (a->lock == 1 && mlock(a->addr, LEN))
			zdtm_fail("mlock: %s", strerror(errno));
		if (a->lock == 2 && mlock2(a->addr, LEN, MLOCK_ONFAULT))
			zdtm_fail("mlock2: %s", strerror(errno));
	}
	check_all("before the checkpoint");
	zdtm_ready();
	zdtm_wait_stop();
	check_all("after SIGTERM");
	zdtm_pass();
}
