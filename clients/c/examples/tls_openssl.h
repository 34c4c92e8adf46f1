/* A natter_transport over TLS with OpenSSL, on top of the POSIX TCP transport. */
#ifndef NATTER_TLS_OPENSSL_H
#define NATTER_TLS_OPENSSL_H

#include <openssl/ssl.h>

#include "natter_posix.h"

typedef struct natter_tls {
    natter_posix tcp;
    SSL_CTX *ctx;
    SSL *ssl;
    const char *server_name; /* checked against the certificate, and sent as SNI */
} natter_tls;

/* Verifies the server against ca_file (NULL: the system's CAs) and server_name. 0 on success. */
int natter_tls_init(natter_tls *t, const char *host, const char *port, const char *ca_file,
                    const char *server_name);

natter_transport natter_tls_transport(natter_tls *t);

#endif
