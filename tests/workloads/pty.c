/*
 * Pseudo-terminals (CRIU's zdtm pty01 and more): pair A, /dev/ptmx with
 * its slave opened twice (S1 read-write, S2 read-write O_NONBLOCK), the
 * slave's inode given to 13333:44444 mode 0620, its settings changed
 * (no ECHO, no OPOST, VMIN 3, VTIME 7) and its window 41x133; pair B left
 * locked (unlockpt not called) in packet mode. At SIGTERM: the settings,
 * window, owner, mode, lock and packet mode are back, S2 is still
 * O_NONBLOCK, and data flows both ways: the master's "ping\n" is read by
 * S1 and S2's "pong\n" by the master. The restored pair may have another
 * /dev/pts index: only its own ends matter.
 */
#include "zdtm.h"
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>

#define UID 13333
#define GID 44444

static void read_exactly(int fd, const char *want, const char *what)
{
	char buf[64];
	size_t len = strlen(want), done = 0;

	while (done < len) {
		ssize_t n = read(fd, buf + done, len - done);
		if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
			zdtm_sleep_ms(10);
			continue;
		}
		if (n <= 0)
			zdtm_fail("%s: read returned %zd (%s)", what, n, n ? strerror(errno) : "EOF");
		done += (size_t)n;
	}
	if (memcmp(buf, want, len))
		zdtm_fail("%s: read %.*s, expected %s", what, (int)len, buf, want);
}

int main(void)
{
	struct termios t;
	struct winsize ws = { .ws_row = 41, .ws_col = 133 };
	struct stat st;
	int a, s1, s2, b, locked = 0, packet = 1;
	char *name;

	zdtm_init();
	a = posix_openpt(O_RDWR | O_NOCTTY);
	if (a < 0 || grantpt(a) || unlockpt(a) || !(name = ptsname(a)))
		zdtm_fail("pair A: %s", strerror(errno));
	s1 = open(name, O_RDWR | O_NOCTTY);
	s2 = open(name, O_RDWR | O_NOCTTY | O_NONBLOCK);
	if (s1 < 0 || s2 < 0)
		zdtm_fail("open %s: %s", name, strerror(errno));
	if (fchown(s1, UID, GID) || fchmod(s1, 0620))
		zdtm_fail("fchown/fchmod %s: %s", name, strerror(errno));
	if (tcgetattr(s1, &t))
		zdtm_fail("tcgetattr: %s", strerror(errno));
	t.c_lflag &= ~(tcflag_t)ECHO;
	t.c_oflag &= ~(tcflag_t)OPOST;
	t.c_cc[VMIN] = 3;
	t.c_cc[VTIME] = 7;
	if (tcsetattr(s1, TCSANOW, &t) || ioctl(a, TIOCSWINSZ, &ws))
		zdtm_fail("tcsetattr/TIOCSWINSZ: %s", strerror(errno));
	b = posix_openpt(O_RDWR | O_NOCTTY);
	if (b < 0 || ioctl(b, TIOCPKT, &packet))
		zdtm_fail("pair B: %s", strerror(errno));
	zdtm_ready();
	zdtm_wait_stop();

	memset(&t, 0, sizeof t);
	memset(&ws, 0, sizeof ws);
	if (tcgetattr(s2, &t) || ioctl(s1, TIOCGWINSZ, &ws))
		zdtm_fail("tcgetattr/TIOCGWINSZ after restore: %s", strerror(errno));
	if ((t.c_lflag & ECHO) || (t.c_oflag & OPOST) || !(t.c_lflag & ICANON) ||
	    t.c_cc[VMIN] != 3 || t.c_cc[VTIME] != 7)
		zdtm_fail("settings lost: lflag %#o oflag %#o VMIN %d VTIME %d", t.c_lflag,
			  t.c_oflag, t.c_cc[VMIN], t.c_cc[VTIME]);
	if (ws.ws_row != 41 || ws.ws_col != 133)
		zdtm_fail("window %dx%d, expected 41x133", ws.ws_row, ws.ws_col);
	if (fstat(s1, &st) || st.st_uid != UID || st.st_gid != GID || (st.st_mode & 07777) != 0620)
		zdtm_fail("slave owner %d:%d mode %o, expected %d:%d 620", (int)st.st_uid,
			  (int)st.st_gid, st.st_mode & 07777, UID, GID);
	if (!(fcntl(s2, F_GETFL) & O_NONBLOCK) || (fcntl(s1, F_GETFL) & O_NONBLOCK))
		zdtm_fail("O_NONBLOCK of the slave descriptions changed");
	if (write(a, "ping\n", 5) != 5)
		zdtm_fail("write to the master: %s", strerror(errno));
	read_exactly(s1, "ping\n", "S1");
	if (write(s2, "pong\n", 5) != 5)
		zdtm_fail("write to S2: %s", strerror(errno));
	read_exactly(a, "pong\n", "the master");
	packet = 0;
	if (ioctl(b, TIOCGPTLCK, &locked) || ioctl(b, TIOCGPKT, &packet))
		zdtm_fail("TIOCGPTLCK/TIOCGPKT on B: %s", strerror(errno));
	if (!locked || !packet)
		zdtm_fail("pair B: locked %d packet mode %d, expected both", locked, packet);
	zdtm_pass();
}
