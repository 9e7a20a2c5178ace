/*
 * Regular files: "seq" is written sequentially from offset 4096 (after an
 * lseek, leaving a hole) relying on the fd's offset; "append" is opened with
 * O_APPEND; "input" is read-only at offset 10; /dev/zero and /dev/urandom are
 * read. One record is written to each file per millisecond. At SIGTERM:
 * every record sits at the slot its number says (so the offset survived),
 * the offsets and flags are as expected, and an append after someone else
 * grew the file lands at its end. Files live in the directory argv[1].
 */
#include "zdtm.h"
#include <fcntl.h>
#include <sys/stat.h>

#define HOLE 4096
#define REC 16

static char path_seq[4096], path_app[4096], path_in[4096];

static void record(char *buf, const char *tag, unsigned long n)
{
	char tmp[REC + 1];

	snprintf(tmp, sizeof(tmp), "%s %010lu\n", tag, n);
	memcpy(buf, tmp, REC);
}

static void write_rec(int fd, const char *tag, unsigned long n)
{
	char buf[REC];

	record(buf, tag, n);
	if (write(fd, buf, REC) != REC)
		zdtm_fail("write %s record %lu: %s", tag, n, strerror(errno));
}

static char *slurp(const char *path, off_t *size)
{
	int fd = open(path, O_RDONLY);
	struct stat st;
	char *buf;

	if (fd < 0 || fstat(fd, &st))
		zdtm_fail("open %s: %s", path, strerror(errno));
	buf = malloc(st.st_size + 1);
	if (!buf || pread(fd, buf, st.st_size, 0) != st.st_size)
		zdtm_fail("read %s", path);
	close(fd);
	*size = st.st_size;
	return buf;
}

int main(int argc, char **argv)
{
	int seq, app, in, zero, urandom, fd;
	unsigned long n = 0, i, slots;
	char buf[64], want[REC];
	off_t size, app_size;
	char *data;

	if (argc < 2)
		zdtm_fail("usage: files DIR");
	zdtm_init();
	snprintf(path_seq, sizeof(path_seq), "%s/seq", argv[1]);
	snprintf(path_app, sizeof(path_app), "%s/append", argv[1]);
	snprintf(path_in, sizeof(path_in), "%s/input", argv[1]);
	fd = open(path_in, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, "0123456789abcdefghij", 20) != 20)
		zdtm_fail("create input");
	close(fd);
	seq = open(path_seq, O_RDWR | O_CREAT | O_TRUNC, 0644);
	app = open(path_app, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
	in = open(path_in, O_RDONLY);
	zero = open("/dev/zero", O_RDONLY);
	urandom = open("/dev/urandom", O_RDONLY);
	if (seq < 0 || app < 0 || in < 0 || zero < 0 || urandom < 0)
		zdtm_fail("open: %s", strerror(errno));
	if (read(in, buf, 10) != 10 || lseek(seq, HOLE, SEEK_SET) != HOLE)
		zdtm_fail("read input / lseek seq");
	zdtm_ready();

	while (!zdtm_stop) {
		write_rec(seq, "seq", n);
		write_rec(app, "app", n);
		n++;
		if (read(zero, buf, sizeof(buf)) != sizeof(buf) || buf[0] || buf[63])
			zdtm_fail("/dev/zero read");
		if (read(urandom, buf, 16) != 16)
			zdtm_fail("/dev/urandom read");
		zdtm_sleep_ms(1);
	}

	if (lseek(seq, 0, SEEK_CUR) != HOLE + (off_t)(n * REC))
		zdtm_fail("seq offset %ld after %lu records", (long)lseek(seq, 0, SEEK_CUR), n);
	if (lseek(in, 0, SEEK_CUR) != 10 || read(in, buf, 3) != 3 || memcmp(buf, "abc", 3))
		zdtm_fail("input offset lost");
	if ((fcntl(seq, F_GETFL) & (O_ACCMODE | O_APPEND)) != O_RDWR)
		zdtm_fail("seq flags %#x", fcntl(seq, F_GETFL));
	if ((fcntl(app, F_GETFL) & (O_ACCMODE | O_APPEND)) != (O_WRONLY | O_APPEND))
		zdtm_fail("append flags %#x, O_APPEND lost?", fcntl(app, F_GETFL));
	if ((fcntl(in, F_GETFL) & O_ACCMODE) != O_RDONLY)
		zdtm_fail("input flags %#x", fcntl(in, F_GETFL));

	/*
	 * With --leave-running the original kept writing after the checkpoint,
	 * so there may be records past n: they must still be at their slots.
	 */
	data = slurp(path_seq, &size);
	if (size < HOLE + (off_t)(n * REC))
		zdtm_fail("seq is %ld bytes, expected at least %lu", (long)size, HOLE + n * REC);
	for (i = 0; i < HOLE; i++)
		if (data[i])
			zdtm_fail("seq hole has data at %lu", i);
	slots = (size - HOLE) / REC;
	for (i = 0; i < slots; i++) {
		record(want, "seq", i);
		if (memcmp(data + HOLE + i * REC, want, REC))
			zdtm_fail("seq slot %lu holds \"%.15s\"", i, data + HOLE + i * REC);
	}
	free(data);

	data = slurp(path_app, &app_size);
	if (app_size % REC || app_size < (off_t)(n * REC))
		zdtm_fail("append file is %ld bytes after %lu records", (long)app_size, n);
	record(want, "app", n - 1);
	if (n && memcmp(data + app_size - REC, want, REC))
		zdtm_fail("last appended record is \"%.15s\", expected record %lu", data + app_size - REC, n - 1);
	free(data);
	/* Someone else grows the file; our O_APPEND write must still land at the end. */
	fd = open(path_app, O_WRONLY | O_APPEND);
	if (fd < 0 || write(fd, "0123456789ABCDE\n", REC) != REC)
		zdtm_fail("grow append file");
	close(fd);
	if (write(app, "END\n", 4) != 4)
		zdtm_fail("final append");
	data = slurp(path_app, &size);
	if (size != app_size + REC + 4 || memcmp(data + size - 4, "END\n", 4))
		zdtm_fail("final append did not land at the end (size %ld, expected %ld)",
			  (long)size, (long)(app_size + REC + 4));
	free(data);
	zdtm_pass();
}
