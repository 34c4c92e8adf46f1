/* The natter_transport for POSIX TCP sockets, the clock, and a poll() wait. */
#define _POSIX_C_SOURCE 200809L

#include "natter_posix.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0 /* where it is missing, ignore SIGPIPE instead */
#endif

void natter_posix_init(natter_posix *p, const char *host, const char *port)
{
    p->host = host;
    p->port = port;
    p->fd = -1;
    p->connect_timeout_ms = 0;
}

/* A non-blocking connect bounded by the timeout: a blocking one may hang for minutes. */
static int connect_one(const struct addrinfo *ai, int timeout_ms)
{
    int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol), err = 0, one = 1;
    socklen_t err_len = sizeof err;
    struct pollfd pfd;
    if (fd < 0) return -1;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        pfd.fd = fd, pfd.events = POLLOUT, pfd.revents = 0;
        if (errno != EINPROGRESS || poll(&pfd, 1, timeout_ms) != 1 ||
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &err_len) != 0 || err != 0) {
            close(fd);
            return -1;
        }
    }
    /* Frames are small and latency matters more than packing them. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static int tcp_open(void *ctx)
{
    natter_posix *p = ctx;
    struct addrinfo hints, *list, *ai;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(p->host, p->port, &hints, &list) != 0) return -1;
    for (ai = list, p->fd = -1; ai && p->fd < 0; ai = ai->ai_next)
        p->fd = connect_one(ai, p->connect_timeout_ms ? p->connect_timeout_ms : 5000);
    freeaddrinfo(list);
    return p->fd < 0 ? -1 : 0;
}

static long tcp_read(void *ctx, uint8_t *buf, size_t cap)
{
    natter_posix *p = ctx;
    ssize_t n = recv(p->fd, buf, cap, 0);
    if (n > 0) return (long)n;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return 0;
    return -1; /* 0 is the peer's end of stream */
}

static long tcp_write(void *ctx, const uint8_t *buf, size_t len)
{
    natter_posix *p = ctx;
    ssize_t n = send(p->fd, buf, len, MSG_NOSIGNAL);
    if (n >= 0) return (long)n;
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
}

static void tcp_close(void *ctx)
{
    natter_posix *p = ctx;
    if (p->fd >= 0) close(p->fd);
    p->fd = -1;
}

natter_transport natter_posix_transport(natter_posix *p)
{
    natter_transport t;
    t.ctx = p;
    t.open = tcp_open;
    t.read = tcp_read;
    t.write = tcp_write;
    t.close = tcp_close;
    return t;
}

uint64_t natter_posix_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int natter_posix_wait(const natter_session *s, int fd, int extra_fd)
{
    struct pollfd pfd[2];
    const uint8_t *pending;
    uint64_t now = natter_posix_now_ms(), deadline = natter_session_deadline(s);
    int timeout = deadline == UINT64_MAX ? -1
                  : deadline <= now      ? 0
                  : deadline - now > 60000 ? 60000
                                         : (int)(deadline - now);
    pfd[0].fd = fd; /* poll skips a negative fd */
    pfd[0].events = POLLIN;
    if (natter_session_tx_pending(s, &pending)) pfd[0].events |= POLLOUT;
    pfd[1].fd = extra_fd;
    pfd[1].events = POLLIN;
    pfd[0].revents = pfd[1].revents = 0;
    if (poll(pfd, 2, timeout) <= 0) return 0;
    return extra_fd >= 0 && (pfd[1].revents & (POLLIN | POLLHUP | POLLERR)) ? 1 : 0;
}
