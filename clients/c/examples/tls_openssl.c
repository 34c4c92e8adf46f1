/*
 * TLS for natter-c with OpenSSL: the session never sees it, it only gets other read and
 * write callbacks. A port to mbedTLS or a modem's TLS stack has the same four functions.
 */
#define _POSIX_C_SOURCE 200809L

#include "tls_openssl.h"

#include <poll.h>

int natter_tls_init(natter_tls *t, const char *host, const char *port, const char *ca_file,
                    const char *server_name)
{
    natter_posix_init(&t->tcp, host, port);
    t->ssl = NULL;
    t->server_name = server_name;
    t->ctx = SSL_CTX_new(TLS_client_method());
    if (!t->ctx) return -1;
    /* TLS 1.2 or later, and a certificate that chains and names the server [NWP-8.1-2]. */
    SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
    if ((ca_file ? SSL_CTX_load_verify_locations(t->ctx, ca_file, NULL)
                 : SSL_CTX_set_default_verify_paths(t->ctx)) != 1)
        return -1;
    /* The session's tx buffer moves and grows between retries of a write. */
    SSL_CTX_set_mode(t->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    return 0;
}

static void tls_close(void *ctx)
{
    natter_tls *t = ctx;
    natter_transport tcp = natter_posix_transport(&t->tcp);
    if (t->ssl) {
        SSL_shutdown(t->ssl); /* best effort: the socket is non-blocking */
        SSL_free(t->ssl);
        t->ssl = NULL;
    }
    tcp.close(tcp.ctx);
}

/* Connects TCP, then shakes hands, waiting on the non-blocking socket up to 5 s a step. */
static int tls_open(void *ctx)
{
    natter_tls *t = ctx;
    natter_transport tcp = natter_posix_transport(&t->tcp);
    int r;
    if (tcp.open(tcp.ctx) != 0) return -1;
    t->ssl = SSL_new(t->ctx);
    if (!t->ssl || SSL_set_fd(t->ssl, t->tcp.fd) != 1 ||
        SSL_set_tlsext_host_name(t->ssl, t->server_name) != 1 ||
        SSL_set1_host(t->ssl, t->server_name) != 1) {
        tls_close(t);
        return -1;
    }
    while ((r = SSL_connect(t->ssl)) != 1) {
        int err = SSL_get_error(t->ssl, r);
        struct pollfd p;
        p.fd = t->tcp.fd;
        p.events = err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
        if ((err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) || poll(&p, 1, 5000) != 1) {
            tls_close(t);
            return -1;
        }
    }
    return 0;
}

/* Maps OpenSSL's result to the transport's: > 0 bytes, 0 try later, < 0 gone. */
static long result(natter_tls *t, int n)
{
    int err;
    if (n > 0) return n;
    err = SSL_get_error(t->ssl, n);
    return err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE ? 0 : -1;
}

static long tls_read(void *ctx, uint8_t *buf, size_t cap)
{
    natter_tls *t = ctx;
    return result(t, SSL_read(t->ssl, buf, cap > 65536 ? 65536 : (int)cap));
}

static long tls_write(void *ctx, const uint8_t *buf, size_t len)
{
    natter_tls *t = ctx;
    return result(t, SSL_write(t->ssl, buf, len > 65536 ? 65536 : (int)len));
}

natter_transport natter_tls_transport(natter_tls *t)
{
    natter_transport tr;
    tr.ctx = t;
    tr.open = tls_open;
    tr.read = tls_read;
    tr.write = tls_write;
    tr.close = tls_close;
    return tr;
}
