/*
 * conformance-client: the conformance client of natter-c, what `natter-conformance client`
 * runs to check the session against the rules a client must follow. It implements the
 * contract of conformance/README.md and nothing more; the session does the protocol.
 *
 *   make build/conformance-client
 *   natter-conformance client --minimal --cmd build/conformance-client
 *
 * natter-c is a minimal-profile client (spec 12): it sends no TYPING (--typing is accepted
 * and does nothing) and skips what GAP reports, hence --minimal.
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

#define MAX_SENDS 64
#define MAX_BODY 16384

/* What survives a restart: where the inbox was read to, and the last client_msg_id used. */
typedef struct state {
    const char *path;
    uint64_t cursor, counter;
} state;

/* A message sent, to name it when its answer comes. */
typedef struct sent {
    uint64_t id;
    char *body;
} sent;

static state st;
static sent sends[MAX_SENDS];
static size_t sends_len;
static const char *conversation;

static void state_load(void)
{
    FILE *f = fopen(st.path, "r");
    unsigned long long cursor, counter;
    st.cursor = NATTER_NO_CURSOR;
    /* Without a file, ids start from the clock so that two devices never share one. */
    st.counter = (uint64_t)time(NULL) * 1000u;
    if (f && fscanf(f, "%llu %llu", &cursor, &counter) == 2) {
        st.cursor = cursor;
        st.counter = counter;
    }
    if (f) fclose(f);
}

/* Writes the file whole and renames it over the old one, so a crash leaves one or the other. */
static void state_save(void)
{
    char tmp[4096];
    FILE *f;
    snprintf(tmp, sizeof tmp, "%s.tmp", st.path);
    f = fopen(tmp, "w");
    if (!f) return;
    fprintf(f, "%llu %llu\n", (unsigned long long)st.cursor, (unsigned long long)st.counter);
    if (fclose(f) == 0) rename(tmp, st.path);
}

/* A JSON string: quotes, backslashes and control characters escaped, UTF-8 as it is. */
static void json_str(const uint8_t *p, size_t len)
{
    size_t i;
    putchar('"');
    for (i = 0; i < len; i++) {
        if (p[i] == '"' || p[i] == '\\') printf("\\%c", p[i]);
        else if (p[i] < 0x20) printf("\\u%04x", p[i]);
        else putchar(p[i]);
    }
    putchar('"');
}

static void json_cstr(const char *s)
{
    json_str((const uint8_t *)s, strlen(s));
}

/* Ends a line of the contract: it is out before the ACK that may follow it. */
static void end_line(void)
{
    printf("}\n");
    fflush(stdout);
}

static const char *body_of(uint64_t id)
{
    size_t i;
    for (i = 0; i < sends_len; i++)
        if (sends[i].id == id) return sends[i].body;
    return "";
}

static void on_deliver(void *user, const natter_deliver *d)
{
    const natter_event *e = &d->event;
    (void)user;
    printf("{\"event\":\"message\",\"conversation\":");
    json_str(d->conversation.ptr, d->conversation.len);
    printf(",\"seq\":%llu,\"inbox_seq\":%llu,\"kind\":%llu,\"sender\":",
           (unsigned long long)e->seq, (unsigned long long)d->inbox_seq,
           (unsigned long long)e->kind);
    json_str(e->sender.ptr, e->sender.len);
    printf(",\"content_type\":");
    json_str(e->content_type.ptr, e->content_type.len);
    printf(",\"body\":");
    json_str(e->body.ptr, e->body.len);
    end_line();
}

static void save_cursor(void *user, uint64_t cursor)
{
    (void)user;
    st.cursor = cursor;
    state_save();
}

static void on_send_ack(void *user, uint64_t id, const natter_send_ack *ack)
{
    (void)user;
    printf("{\"event\":\"sent\",\"conversation\":");
    json_cstr(conversation);
    printf(",\"body\":");
    json_cstr(body_of(id));
    printf(",\"seq\":%llu", (unsigned long long)ack->seq);
    end_line();
}

static void on_send_error(void *user, uint64_t id, const natter_error *error)
{
    (void)user;
    printf("{\"event\":\"send_failed\",\"conversation\":");
    json_cstr(conversation);
    printf(",\"body\":");
    json_cstr(body_of(id));
    printf(",\"code\":%llu", (unsigned long long)error->code);
    end_line();
}

static void on_gap(void *user, const natter_gap *gap)
{
    (void)user;
    printf("{\"event\":\"gap\",\"conversation\":");
    json_str(gap->conversation.ptr, gap->conversation.len);
    printf(",\"from\":%llu,\"to\":%llu", (unsigned long long)gap->from,
           (unsigned long long)gap->to);
    end_line();
}

static void on_state(void *user, int s, uint64_t code)
{
    static const char *names[] = {"waiting", "connecting", "hello", "ready",
                                  "live",    "draining",   "closing", "stopped"};
    (void)user;
    fprintf(stderr, "conformance-client: %s (code 0x%02llx)\n", names[s],
            (unsigned long long)code);
}

static int usage(const char *name)
{
    fprintf(stderr,
            "usage: %s --url tcp://HOST:PORT --token TOKEN --cursor-file PATH "
            "--conversation ID [--send N] [--big BYTES] [--typing]\n",
            name);
    return 2;
}

int main(int argc, char **argv)
{
    static uint8_t rx[4096 + 4], tx[8192], outbox[65536];
    const char *url = NULL, *token = NULL;
    char host[256], *port;
    long n_send = 0, big = 0;
    int i, eof = 0;
    uint64_t eof_at = 0;
    natter_config cfg;
    natter_session s;
    natter_posix tcp;
    natter_transport t;

    for (i = 1; i < argc; i++) {
        const char *arg = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--typing") == 0) continue; /* the minimal profile has no TYPING */
        if (!value) return usage(argv[0]);
        i++;
        if (strcmp(arg, "--url") == 0) url = value;
        else if (strcmp(arg, "--token") == 0) token = value;
        else if (strcmp(arg, "--cursor-file") == 0) st.path = value;
        else if (strcmp(arg, "--conversation") == 0) conversation = value;
        else if (strcmp(arg, "--send") == 0) n_send = strtol(value, NULL, 10);
        else if (strcmp(arg, "--big") == 0) big = strtol(value, NULL, 10);
        else return usage(argv[0]);
    }
    if (!url || !token || !st.path || !conversation || strncmp(url, "tcp://", 6) != 0 ||
        n_send < 0 || n_send >= MAX_SENDS || big < 0 || big > MAX_BODY)
        return usage(argv[0]);
    snprintf(host, sizeof host, "%s", url + 6);
    port = strrchr(host, ':');
    if (!port) return usage(argv[0]);
    *port++ = '\0';
    signal(SIGPIPE, SIG_IGN); /* a dead peer is an error to handle, not a signal */

    state_load();
    memset(&cfg, 0, sizeof cfg);
    cfg.token.ptr = (const uint8_t *)token, cfg.token.len = strlen(token);
    cfg.agent.ptr = (const uint8_t *)"natter-c-conformance/0.1", cfg.agent.len = 24;
    cfg.cursor = st.cursor;
    cfg.rx_buf = rx, cfg.rx_cap = sizeof rx;
    cfg.tx_buf = tx, cfg.tx_cap = sizeof tx;
    cfg.outbox_buf = outbox, cfg.outbox_cap = sizeof outbox;
    cfg.seed = (uint32_t)getpid() ^ (uint32_t)time(NULL);
    cfg.cb.on_deliver = on_deliver;
    cfg.cb.save_cursor = save_cursor;
    cfg.cb.on_send_ack = on_send_ack;
    cfg.cb.on_send_error = on_send_error;
    cfg.cb.on_gap = on_gap;
    cfg.cb.on_state = on_state;
    if (natter_session_init(&s, &cfg, natter_posix_now_ms()) != NATTER_OK) return 1;

    /* The messages go into the outbox now; the session writes them once READY has come. */
    for (i = big ? 0 : 1; i <= n_send; i++) {
        natter_bytes conv = {(const uint8_t *)conversation, strlen(conversation)};
        natter_bytes none = {NULL, 0}, body;
        char *text = malloc(i == 0 ? (size_t)big + 1 : 16);
        if (!text) return 1;
        if (i == 0) {
            memset(text, 'x', (size_t)big);
            text[big] = '\0';
        } else {
            snprintf(text, 16, "m%d", i);
        }
        body.ptr = (const uint8_t *)text, body.len = strlen(text);
        st.counter++;
        state_save(); /* the counter is stored before its id is used */
        sends[sends_len].id = st.counter;
        sends[sends_len++].body = text;
        if (natter_session_send(&s, conv, st.counter, none, body) != NATTER_OK) {
            fprintf(stderr, "conformance-client: %s does not fit the outbox\n", text);
            printf("{\"event\":\"send_failed\",\"conversation\":");
            json_cstr(conversation);
            printf(",\"body\":");
            json_cstr(text);
            printf(",\"code\":0");
            end_line();
        }
    }

    natter_posix_init(&tcp, host, port);
    t = natter_posix_transport(&tcp);
    for (;;) {
        uint64_t now = natter_posix_now_ms();
        natter_drive(&s, &t, now);
        if (s.state == NATTER_S_STOPPED) {
            /* Never again with this token [NWP-5.5-3]. */
            printf("{\"event\":\"fatal\",\"code\":%llu", (unsigned long long)s.close_code);
            end_line();
            return 3;
        }
        /* At the end of stdin, give the coalesced ACK its moment (the cursor is saved). */
        if (eof && (s.acked >= s.cursor || s.state != NATTER_S_LIVE || now >= eof_at)) break;
        if (natter_posix_wait(&s, tcp.fd, eof ? -1 : 0)) {
            char buf[256];
            if (read(0, buf, sizeof buf) <= 0) {
                eof = 1;
                eof_at = now + 1000;
            }
        }
    }
    t.close(t.ctx);
    return 0;
}
