/*
 * A private file mapping: a 16-page file created in argv[1] is mapped
 * MAP_PRIVATE read-write; every 4th page is modified (copy-on-write), every
 * 4th+1 only read, the rest never touched. At SIGTERM the modified pages keep
 * their modifications, the others show the file's content, the mapping still
 * names the file in /proc/self/maps and the file itself is unmodified.
 */
#include "zdtm.h"
#include <fcntl.h>
#include <sys/mman.h>

#define PAGES 16

static long page;

static unsigned char file_byte(long i)
{
	return (unsigned char)(i * 13 + i / 4096 + 7);
}

static unsigned char cow_byte(long i)
{
	return file_byte(i) ^ 0x5a;
}

int main(int argc, char **argv)
{
	char path[4096], line[4608], *buf;
	unsigned char *map;
	volatile unsigned long *counter;
	volatile unsigned long sum = 0;	/* volatile: the reads must fault pages in */
	long i, p;
	int fd, found = 0;
	FILE *maps;

	if (argc < 2)
		zdtm_fail("usage: mapfile DIR");
	page = sysconf(_SC_PAGESIZE);
	zdtm_init();
	snprintf(path, sizeof(path), "%s/mapped", argv[1]);
	buf = malloc(PAGES * page);
	for (i = 0; i < PAGES * page; i++)
		buf[i] = (char)file_byte(i);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, buf, PAGES * page) != PAGES * page)
		zdtm_fail("create %s: %s", path, strerror(errno));
	map = mmap(NULL, PAGES * page, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED)
		zdtm_fail("mmap: %s", strerror(errno));
	close(fd);
	for (p = 0; p < PAGES; p++)
		for (i = p * page; i < (p + 1) * page; i++)
			if (p % 4 == 0)
				map[i] = cow_byte(i);
			else if (p % 4 == 1)
				sum += map[i];
	/* The first word of page 0 keeps changing. */
	counter = (volatile unsigned long *)map;
	*counter = 0;
	zdtm_ready();

	while (!zdtm_stop) {
		(*counter)++;
		if (*counter % 100000 == 0)
			zdtm_sleep_ms(1);
	}

	if (*counter == 0)
		zdtm_fail("counter in the mapping did not advance");
	for (p = 0; p < PAGES; p++)
		for (i = p * page + (p == 0 ? sizeof(long) : 0); i < (p + 1) * page; i++)
			if (map[i] != (p % 4 == 0 ? cow_byte(i) : file_byte(i)))
				zdtm_fail("page %ld (%s) byte %ld is %#x", p,
					  p % 4 == 0 ? "modified" : p % 4 == 1 ? "read" : "untouched",
					  i - p * page, map[i]);
	fd = open(path, O_RDONLY);
	if (fd < 0 || read(fd, buf, PAGES * page) != PAGES * page)
		zdtm_fail("reread %s", path);
	for (i = 0; i < PAGES * page; i++)
		if ((unsigned char)buf[i] != file_byte(i))
			zdtm_fail("the file itself changed at byte %ld", i);
	maps = fopen("/proc/self/maps", "r");
	while (maps && fgets(line, sizeof(line), maps)) {
		unsigned long start;

		if (sscanf(line, "%lx-", &start) == 1 && start == (unsigned long)map) {
			found = 1;
			if (!strstr(line, " rw-p ") || !strstr(line, path))
				zdtm_fail("mapping is now: %s", line);
		}
	}
	if (!found)
		zdtm_fail("mapping at %p is gone from /proc/self/maps", (void *)map);
	zdtm_pass();
}
