/*
 * The files unix sockets are bound to keep their owner and mode (as
 * PostgreSQL's .s.PGSQL.5432): a stream socket listening on DIR/owned.sock
 * given to 65534:65534 with mode 0640, and a datagram socket bound to
 * DIR/private.sock with mode 0600 (ferry's restore binds as root with its
 * own umask); a datagram server bound to DIR/ghost.sock, with a client
 * connected to it, whose file was unlinked. At SIGTERM both files have
 * the owner and mode they were given and both sockets still work through
 * them; DIR/ghost.sock is still gone, and the client still reaches its
 * server. Likewise two datagram servers bound in turn to DIR/sub/same.sock
 * (each unlinked after its client connected, then DIR/sub removed): the
 * directory stays gone, each client reaches its own server, and both keep
 * the name.
 */
#include "zdtm.h"
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

static void expect_file(const char *path, uid_t uid, gid_t gid, mode_t mode)
{
	struct stat st;

	if (lstat(path, &st) || !S_ISSOCK(st.st_mode))
		zdtm_fail("%s is no longer a socket file", path);
	if (st.st_uid != uid || st.st_gid != gid || (st.st_mode & 07777) != mode)
		zdtm_fail("%s is %u:%u %o, not %u:%u %o", path, st.st_uid, st.st_gid,
			  st.st_mode & 07777, uid, gid, mode);
}

int main(int argc, char **argv)
{
	struct sockaddr_un owned = { .sun_family = AF_UNIX }, priv = { .sun_family = AF_UNIX };
	struct sockaddr_un ghost = { .sun_family = AF_UNIX };
	int lst, dg, cl, acc, tx, srv, gcl, same[2], same_cl[2];
	char sub[4096];
	struct sockaddr_un same_a = { .sun_family = AF_UNIX }, got;
	socklen_t got_len;
	char c;

	zdtm_init();
	if (argc < 2)
		zdtm_fail("usage: unix_file_mode DIR");
	snprintf(owned.sun_path, sizeof owned.sun_path, "%s/owned.sock", argv[1]);
	snprintf(priv.sun_path, sizeof priv.sun_path, "%s/private.sock", argv[1]);
	lst = socket(AF_UNIX, SOCK_STREAM, 0);
	dg = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (lst < 0 || dg < 0 || bind(lst, (struct sockaddr *)&owned, sizeof owned) ||
	    listen(lst, 3) || bind(dg, (struct sockaddr *)&priv, sizeof priv))
		zdtm_fail("binding: %s", strerror(errno));
	if (chown(owned.sun_path, 65534, 65534) || chmod(owned.sun_path, 0640) ||
	    chmod(priv.sun_path, 0600))
		zdtm_fail("chown/chmod: %s", strerror(errno));
	snprintf(ghost.sun_path, sizeof ghost.sun_path, "%s/ghost.sock", argv[1]);
	srv = socket(AF_UNIX, SOCK_DGRAM, 0);
	gcl = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (srv < 0 || gcl < 0 || bind(srv, (struct sockaddr *)&ghost, sizeof ghost) ||
	    connect(gcl, (struct sockaddr *)&ghost, sizeof ghost) || unlink(ghost.sun_path))
		zdtm_fail("the unlinked server: %s", strerror(errno));
	snprintf(sub, sizeof sub, "%s/sub", argv[1]);
	snprintf(same_a.sun_path, sizeof same_a.sun_path, "%s/sub/same.sock", argv[1]);
	if (mkdir(sub, 0755))
		zdtm_fail("mkdir %s: %s", sub, strerror(errno));
	for (int i = 0; i < 2; i++) {
		same[i] = socket(AF_UNIX, SOCK_DGRAM, 0);
		same_cl[i] = socket(AF_UNIX, SOCK_DGRAM, 0);
		if (same[i] < 0 || same_cl[i] < 0 ||
		    bind(same[i], (struct sockaddr *)&same_a, sizeof same_a) ||
		    connect(same_cl[i], (struct sockaddr *)&same_a, sizeof same_a) ||
		    unlink(same_a.sun_path))
			zdtm_fail("server %d on %s: %s", i, same_a.sun_path, strerror(errno));
	}
	if (rmdir(sub))
		zdtm_fail("rmdir %s: %s", sub, strerror(errno));
	zdtm_ready();
	zdtm_wait_stop();

	expect_file(owned.sun_path, 65534, 65534, 0640);
	expect_file(priv.sun_path, getuid(), getgid(), 0600);
	cl = socket(AF_UNIX, SOCK_STREAM, 0);
	if (cl < 0 || connect(cl, (struct sockaddr *)&owned, sizeof owned))
		zdtm_fail("connecting to %s: %s", owned.sun_path, strerror(errno));
	acc = accept(lst, NULL, NULL);
	if (acc < 0 || send(cl, "s", 1, 0) != 1 || recv(acc, &c, 1, 0) != 1 || c != 's')
		zdtm_fail("the listener no longer works: %s", strerror(errno));
	tx = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (tx < 0 || sendto(tx, "d", 1, 0, (struct sockaddr *)&priv, sizeof priv) != 1 ||
	    recv(dg, &c, 1, 0) != 1 || c != 'd')
		zdtm_fail("the datagram socket no longer receives: %s", strerror(errno));
	if (access(ghost.sun_path, F_OK) == 0)
		zdtm_fail("%s is back", ghost.sun_path);
	if (send(gcl, "g", 1, 0) != 1 || recv(srv, &c, 1, MSG_DONTWAIT) != 1 || c != 'g')
		zdtm_fail("the client no longer reaches the unlinked server: %s", strerror(errno));
	if (access(sub, F_OK) == 0)
		zdtm_fail("%s is back", sub);
	for (int i = 0; i < 2; i++) {
		char want = (char)('0' + i);

		got_len = sizeof got;
		if (send(same_cl[i], &want, 1, 0) != 1 || recv(same[i], &c, 1, MSG_DONTWAIT) != 1 ||
		    c != want)
			zdtm_fail("client %d no longer reaches its server on %s: %s", i,
				  same_a.sun_path, strerror(errno));
		if (getsockname(same[i], (struct sockaddr *)&got, &got_len) ||
		    strcmp(got.sun_path, same_a.sun_path))
			zdtm_fail("server %d lost its name %s", i, same_a.sun_path);
	}
	zdtm_pass();
}
