/*
 * natter-chat: a line chat over natter-c on POSIX.
 *
 *   NATTER_TOKEN=$(natter token --user alice --device c1) natter-chat d/alice/bob
 *
 * Sends each line of stdin to the conversation and prints every event that arrives, as
 * "[conversation #seq] sender: body". Status lines ("* ...") go to stderr. At the end of
 * stdin it exits once every line is acknowledged; with --listen it ignores stdin and runs
 * until killed.
 *
 * Environment:
 *   NATTER_TOKEN     the device's token (required)
 *   NATTER_ADDR      host:port of the server (default 127.0.0.1:7400)
 *   NATTER_STATE     a file keeping the inbox cursor and the message counter across runs
 *   NATTER_TLS=1     use TLS (when built with OpenSSL); NATTER_TLS_CA is a CA file and
 *                    NATTER_TLS_NAME the name the certificate must carry (default: the host)
 */
#define _POSIX_C_SOURCE 200809L

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "natter.h"
#include "natter_posix.h"
#ifdef NATTER_CHAT_TLS
#include "tls_openssl.h"
#endif

/* What survives a restart: where the inbox was read to, and the last client_msg_id used. */
typedef struct state {
    const char *path;
    uint64_t cursor, counter;
} state;

static void state_load(state *st)
{
    FILE *f = st->path ? fopen(st->path, "r") : NULL;
    unsigned long long cursor, counter;
    st->cursor = NATTER_NO_CURSOR;
    /* Without a file, ids start from the clock so that two runs never share one. */
    st->counter = (uint64_t)time(NULL) * 1000u;
    if (f && fscanf(f, "%llu %llu", &cursor, &counter) == 2) {
        st->cursor = cursor;
        st->counter = counter;
    }
    if (f) fclose(f);
}

/* Writes the file whole and renames it over the old one, so a crash leaves one or the other. */
static void state_save(const state *st)
{
    char tmp[1024];
    FILE *f;
    if (!st->path) return;
    snprintf(tmp, sizeof tmp, "%s.tmp", st->path);
    f = fopen(tmp, "w");
    if (!f) return;
    fprintf(f, "%llu %llu\n", (unsigned long long)st->cursor, (unsigned long long)st->counter);
    if (fclose(f) == 0) rename(tmp, st->path);
}

static void on_deliver(void *user, const natter_deliver *d)
{
    (void)user;
    const natter_event *e = &d->event;
    printf("[%.*s #%llu] %.*s: %.*s\n", (int)d->conversation.len, (const char *)d->conversation.ptr,
           (unsigned long long)e->seq, (int)e->sender.len, (const char *)e->sender.ptr,
           (int)e->body.len, (const char *)e->body.ptr);
}

static void save_cursor(void *user, uint64_t cursor)
{
    state *st = user;
    st->cursor = cursor;
    state_save(st);
}

static void on_send_ack(void *user, uint64_t id, const natter_send_ack *ack)
{
    (void)user;
    fprintf(stderr, "* sent %llu as #%llu%s\n", (unsigned long long)id,
            (unsigned long long)ack->seq, ack->duplicate ? " (duplicate)" : "");
}

static void on_send_error(void *user, uint64_t id, const natter_error *e)
{
    (void)user;
    fprintf(stderr, "* refused %llu: code 0x%02llx %.*s\n", (unsigned long long)id,
            (unsigned long long)e->code, (int)e->message.len, (const char *)e->message.ptr);
}

static void on_state(void *user, int s, uint64_t code)
{
    static const char *names[] = {"waiting", "connecting", "hello", "ready",
                                  "live",    "draining",   "closing", "stopped"};
    (void)user;
    if (code) fprintf(stderr, "* %s (code 0x%02llx)\n", names[s], (unsigned long long)code);
    else fprintf(stderr, "* %s\n", names[s]);
}

int main(int argc, char **argv)
{
    static uint8_t rx[4096 + 4], tx[2048], outbox[8192];
    static char in[4096];
    size_t in_len = 0;
    uint64_t line_id = 0; /* the id of the line waiting for outbox room, 0 if none */
    int listen = argc == 3 && strcmp(argv[1], "--listen") == 0, eof = listen;
    const char *conv = argv[argc - 1], *token = getenv("NATTER_TOKEN");
    const char *addr = getenv("NATTER_ADDR") ? getenv("NATTER_ADDR") : "127.0.0.1:7400";
    char host[256], *colon;
    natter_config cfg;
    natter_session s;
    natter_posix tcp;
    natter_transport t;
    state st;
    int *fd = &tcp.fd;
#ifdef NATTER_CHAT_TLS
    natter_tls tls;
#endif

    if (argc < 2 || argc > 3 || !token) {
        fprintf(stderr, "usage: NATTER_TOKEN=... %s [--listen] CONVERSATION\n", argv[0]);
        return 2;
    }
    snprintf(host, sizeof host, "%s", addr);
    colon = strrchr(host, ':');
    if (!colon) {
        fprintf(stderr, "NATTER_ADDR must be host:port\n");
        return 2;
    }
    *colon = '\0';
    signal(SIGPIPE, SIG_IGN); /* a dead peer is an error to handle, not a signal */
    setvbuf(stdout, NULL, _IOLBF, 0);

    st.path = getenv("NATTER_STATE");
    state_load(&st);
    memset(&cfg, 0, sizeof cfg);
    cfg.token.ptr = (const uint8_t *)token, cfg.token.len = strlen(token);
    cfg.agent.ptr = (const uint8_t *)"natter-chat/0.1", cfg.agent.len = 15;
    cfg.cursor = st.cursor;
    cfg.rx_buf = rx, cfg.rx_cap = sizeof rx;
    cfg.tx_buf = tx, cfg.tx_cap = sizeof tx;
    cfg.outbox_buf = outbox, cfg.outbox_cap = sizeof outbox;
    cfg.seed = (uint32_t)getpid() ^ (uint32_t)time(NULL);
    cfg.cb.user = &st;
    cfg.cb.on_deliver = on_deliver;
    cfg.cb.save_cursor = save_cursor;
    cfg.cb.on_send_ack = on_send_ack;
    cfg.cb.on_send_error = on_send_error;
    cfg.cb.on_state = on_state;
    if (natter_session_init(&s, &cfg, natter_posix_now_ms()) != NATTER_OK) return 1;

    natter_posix_init(&tcp, host, colon + 1);
    t = natter_posix_transport(&tcp);
#ifdef NATTER_CHAT_TLS
    if (getenv("NATTER_TLS") && strcmp(getenv("NATTER_TLS"), "1") == 0) {
        const char *name = getenv("NATTER_TLS_NAME") ? getenv("NATTER_TLS_NAME") : host;
        if (natter_tls_init(&tls, host, colon + 1, getenv("NATTER_TLS_CA"), name) != 0) {
            fprintf(stderr, "TLS setup failed\n");
            return 1;
        }
        t = natter_tls_transport(&tls);
        fd = &tls.tcp.fd;
    }
#endif

    for (;;) {
        char *nl;
        /* Hand complete lines to the outbox; also the last one, and one too long to wait. */
        while ((nl = memchr(in, '\n', in_len)) || ((eof || in_len == sizeof in) && in_len > 0)) {
            size_t len = nl ? (size_t)(nl - in) : in_len;
            natter_bytes c = {(const uint8_t *)conv, strlen(conv)}, none = {NULL, 0};
            natter_bytes body = {(const uint8_t *)in, len};
            int r;
            if (!line_id) { /* persist the counter before its id is used */
                line_id = ++st.counter;
                state_save(&st);
            }
            r = natter_session_send(&s, c, line_id, none, body);
            if (r == NATTER_E_NO_SPACE && natter_session_pending(&s) > 0) break; /* full */
            if (r != NATTER_OK) fprintf(stderr, "* cannot send: %s\n", natter_result_name(r));
            line_id = 0;
            len += nl ? 1 : 0;
            memmove(in, in + len, in_len - len);
            in_len -= len;
        }
        natter_drive(&s, &t, natter_posix_now_ms());
        if (s.state == NATTER_S_STOPPED) return 1;
        if (!listen && eof && in_len == 0 && natter_session_pending(&s) == 0) break;
        /* Read stdin only when the last line went out and there is room for more. */
        if (natter_posix_wait(&s, *fd, !eof && !line_id && in_len < sizeof in ? 0 : -1)) {
            ssize_t n = read(0, in + in_len, sizeof in - in_len);
            if (n <= 0) eof = 1;
            else in_len += (size_t)n;
        }
    }
    fprintf(stderr, "* done\n");
    return 0;
}
