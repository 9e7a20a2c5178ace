/*
 * A file opened once and inherited by a child: parent and child both
 * write 16-byte records through the one description, so they share its
 * offset and no record overwrites another. At SIGTERM the parent stops the
 * child, which reports how many records it wrote; the shared offset must
 * be right after the last of them, and the file up to it must hold every
 * record of both, each once and in order. (What lies beyond the offset,
 * written by an original left running after the checkpoint, is ignored.)
 */
#include "zdtm.h"
#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define RECORD 16

static volatile sig_atomic_t leave;

static void on_usr1(int sig)
{
	(void)sig;
	leave = 1;
}

static int put(int fd, char who, uint64_t n)
{
	char rec[RECORD + 1];

	snprintf(rec, sizeof rec, "%c%014llu\n", who, (unsigned long long)n);
	return write(fd, rec, RECORD) == RECORD ? 0 : -1;
}

int main(int argc, char **argv)
{
	char path[4096];
	int fd, report[2], status;
	uint64_t mine = 0, theirs = 0;
	struct stat st;
	pid_t pid;

	zdtm_init();
	if (argc < 2)
		zdtm_fail("usage: tree_fileoff DIR");
	snprintf(path, sizeof path, "%s/records", argv[1]);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || pipe(report))
		zdtm_fail("open %s: %s", path, strerror(errno));
	pid = fork();
	if (pid < 0)
		zdtm_fail("fork: %s", strerror(errno));
	if (pid == 0) {
		signal(SIGTERM, SIG_DFL);
		signal(SIGUSR1, on_usr1);
		while (!leave) {
			if (put(fd, 'C', theirs))
				_exit(1);
			theirs++;
			zdtm_sleep_ms(1);
		}
		if (write(report[1], &theirs, sizeof theirs) != sizeof theirs)
			_exit(2);
		_exit(0);
	}
	zdtm_ready();
	while (!zdtm_stop) {
		if (put(fd, 'P', mine))
			zdtm_fail("write: %s", strerror(errno));
		mine++;
		zdtm_sleep_ms(1);
	}
	kill(pid, SIGUSR1);
	if (read(report[0], &theirs, sizeof theirs) != sizeof theirs)
		zdtm_fail("the child did not report");
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
		zdtm_fail("the child ended with status %#x", status);
	off_t end = lseek(fd, 0, SEEK_CUR);
	if ((uint64_t)end != (mine + theirs) * RECORD)
		zdtm_fail("the offset is %lld for %llu + %llu records", (long long)end,
			  (unsigned long long)mine, (unsigned long long)theirs);
	if (fstat(fd, &st) || st.st_size < end)
		zdtm_fail("the file has %lld bytes, the offset is %lld", (long long)st.st_size,
			  (long long)end);
	int in = open(path, O_RDONLY);
	uint64_t next_p = 0, next_c = 0;
	char rec[RECORD + 1] = { 0 };
	for (off_t at = 0; at < end; at += RECORD) {
		if (in < 0 || pread(in, rec, RECORD, at) != RECORD)
			zdtm_fail("reading record at %lld: %s", (long long)at, strerror(errno));
		uint64_t n = strtoull(rec + 1, NULL, 10);
		if (rec[0] == 'P' && n == next_p)
			next_p++;
		else if (rec[0] == 'C' && n == next_c)
			next_c++;
		else
			zdtm_fail("record at %lld is %.15s, expected P%llu or C%llu", (long long)at,
				  rec, (unsigned long long)next_p, (unsigned long long)next_c);
	}
	zdtm_pass();
}
