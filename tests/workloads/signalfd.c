/*
 * signalfd: SIGUSR2 blocked and read through a non-blocking signalfd; one
 * SIGUSR2 raised before READY is pending at checkpoint. At SIGTERM: that
 * signal is read from the signalfd, then nothing more, and a SIGUSR2 sent
 * afterwards is read too.
 */
#include "zdtm.h"
#include <fcntl.h>
#include <sys/signalfd.h>

static void expect(int sfd, int code, const char *what)
{
	struct signalfd_siginfo si;

	if (read(sfd, &si, sizeof si) != sizeof si)
		zdtm_fail("%s: no signal read: %s", what, strerror(errno));
	if (si.ssi_signo != SIGUSR2 || si.ssi_code != code || si.ssi_pid != (uint32_t)getpid())
		zdtm_fail("%s: read signal %u code %d from pid %u", what, si.ssi_signo,
			  si.ssi_code, si.ssi_pid);
}

int main(void)
{
	struct signalfd_siginfo si;
	sigset_t set;
	int sfd;

	zdtm_init();
	sigemptyset(&set);
	sigaddset(&set, SIGUSR2);
	if (sigprocmask(SIG_BLOCK, &set, NULL))
		zdtm_fail("sigprocmask: %s", strerror(errno));
	sfd = signalfd(-1, &set, SFD_NONBLOCK);
	if (sfd < 0)
		zdtm_fail("signalfd: %s", strerror(errno));
	raise(SIGUSR2);
	zdtm_ready();
	zdtm_wait_stop();

	if (!(fcntl(sfd, F_GETFL) & O_NONBLOCK))
		zdtm_fail("the signalfd lost O_NONBLOCK");
	expect(sfd, SI_TKILL, "the signal pending at checkpoint");
	if (read(sfd, &si, sizeof si) != -1 || errno != EAGAIN)
		zdtm_fail("a second signal was read");
	kill(getpid(), SIGUSR2);
	expect(sfd, SI_USER, "the signal sent after restore");
	zdtm_pass();
}
