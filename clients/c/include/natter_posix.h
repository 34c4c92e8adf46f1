/* natter-c on POSIX: a TCP transport, a monotonic clock and a poll() helper. */
#ifndef NATTER_POSIX_H
#define NATTER_POSIX_H

#include "natter.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A TCP connection to host:port; fd is -1 while closed. */
typedef struct natter_posix {
    const char *host, *port;
    int fd;
    int connect_timeout_ms; /* 0: 5000 */
} natter_posix;

/** Prepares a closed connection to host:port (the strings must outlive it). */
void natter_posix_init(natter_posix *p, const char *host, const char *port);

/** The transport callbacks over p: non-blocking socket, TCP_NODELAY. */
natter_transport natter_posix_transport(natter_posix *p);

/** Milliseconds of CLOCK_MONOTONIC: the session's now_ms. */
uint64_t natter_posix_now_ms(void);

/**
 * Waits until fd is readable (or writable while the session has bytes to write),
 * extra_fd is readable (when >= 0), or the session's deadline passes.
 * Returns 1 when extra_fd is readable, 0 otherwise.
 */
int natter_posix_wait(const natter_session *s, int fd, int extra_fd);

#ifdef __cplusplus
}
#endif

#endif
