/*
 * TCP states for the zdtm-style workloads that hold TCP sockets (after
 * zdtm.h): reading a socket's state and waiting for one.
 */
#ifndef ZDTM_TCP_H
#define ZDTM_TCP_H

#include "zdtm.h"
#include <netinet/in.h>
#include <netinet/tcp.h>

/* The TCP state of fd (TCP_INFO), failing the test if it cannot be read. */
static inline int zdtm_tcp_state(int fd)
{
	struct tcp_info info;
	socklen_t len = sizeof(info);

	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len))
		zdtm_fail("TCP_INFO: %s", strerror(errno));
	return info.tcpi_state;
}

/* Waits up to 5 s for fd to reach TCP state `state`, failing the test
 * (naming it `what`) if it does not. */
static inline void zdtm_wait_tcp_state(int fd, int state, const char *what)
{
	for (int i = 0; i < 500 && zdtm_tcp_state(fd) != state; i++)
		zdtm_sleep_ms(10);
	if (zdtm_tcp_state(fd) != state)
		zdtm_fail("%s: state %d, not %d", what, zdtm_tcp_state(fd), state);
}

#endif
