/*
 * The session state machine in virtual time: the test plays the server, feeding frames in and
 * decoding what the client writes, and moves the clock by hand. No sockets, no sleeps.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "natter.h"

static int passed, failed;

#define CHECK(cond)                                                                            \
    do {                                                                                       \
        if (cond) {                                                                            \
            passed++;                                                                          \
        } else {                                                                               \
            failed++;                                                                          \
            printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                             \
        }                                                                                      \
    } while (0)

#define HB 1000 /* the heartbeat the fake server announces */

/* A session with its buffers, a clock, and what it told the application. */
typedef struct fake {
    natter_session s;
    uint8_t rx[4100], tx[512], outbox[1024];
    uint64_t now;
    char log[2048];          /* callbacks, as "deliver 41; cursor 41; ..." */
    uint8_t wire[4096];      /* what the client wrote, drained by sent() */
    natter_frame out[16];    /* ... decoded */
    int n_out;
    int echo;                /* on_deliver answers each event with a SEND */
} fake;

static void logf_(fake *f, const char *fmt, ...)
{
    size_t len = strlen(f->log);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->log + len, sizeof f->log - len, fmt, ap);
    va_end(ap);
}

static void on_deliver(void *user, const natter_deliver *d)
{
    fake *f = user;
    logf_(user, "deliver %llu %.*s; ", (unsigned long long)d->inbox_seq, (int)d->event.body.len,
          (const char *)d->event.body.ptr);
    if (f->echo)
        CHECK(natter_session_send(&f->s, d->conversation, 500 + d->inbox_seq, d->event.content_type,
                                  d->event.body) == NATTER_OK);
}

static void save_cursor(void *user, uint64_t c)
{
    logf_(user, "cursor %llu; ", (unsigned long long)c);
}

static void on_send_ack(void *user, uint64_t id, const natter_send_ack *a)
{
    logf_(user, "acked %llu seq %llu%s; ", (unsigned long long)id, (unsigned long long)a->seq,
          a->duplicate ? " dup" : "");
}

static void on_send_error(void *user, uint64_t id, const natter_error *e)
{
    logf_(user, "refused %llu code %llu; ", (unsigned long long)id, (unsigned long long)e->code);
}

static void on_gap(void *user, const natter_gap *g)
{
    logf_(user, "gap '%.*s' %llu..%llu; ", (int)g->conversation.len,
          (const char *)g->conversation.ptr, (unsigned long long)g->from,
          (unsigned long long)g->to);
}

static void on_state(void *user, int state, uint64_t code)
{
    logf_(user, "state %d/%llu; ", state, (unsigned long long)code);
}

static natter_bytes B(const char *s)
{
    natter_bytes b;
    b.ptr = (const uint8_t *)s;
    b.len = strlen(s);
    return b;
}

static void setup(fake *f, uint64_t cursor, uint32_t max_in_flight)
{
    natter_config c;
    memset(f, 0, sizeof *f);
    memset(&c, 0, sizeof c);
    c.token = B("tok-alice");
    c.agent = B("natter-c/test");
    c.cursor = cursor;
    c.rx_buf = f->rx, c.rx_cap = sizeof f->rx;
    c.tx_buf = f->tx, c.tx_cap = sizeof f->tx;
    c.outbox_buf = f->outbox, c.outbox_cap = sizeof f->outbox;
    c.max_in_flight = max_in_flight;
    c.seed = 42;
    c.cb.user = f;
    c.cb.on_deliver = on_deliver;
    c.cb.save_cursor = save_cursor;
    c.cb.on_send_ack = on_send_ack;
    c.cb.on_send_error = on_send_error;
    c.cb.on_gap = on_gap;
    c.cb.on_state = on_state;
    f->now = 1000000;
    CHECK(natter_session_init(&f->s, &c, f->now) == NATTER_OK);
}

/* Drains and decodes what the client wrote; returns the number of frames. */
static int sent(fake *f)
{
    const uint8_t *p;
    size_t len = natter_session_tx_pending(&f->s, &p), pos = 0, n;
    memcpy(f->wire, p, len);
    natter_session_tx_done(&f->s, len);
    f->n_out = 0;
    while (pos < len && f->n_out < 16) {
        if (natter_frame_split(f->wire + pos, len - pos, 65536, &n) != NATTER_OK ||
            natter_frame_decode(f->wire + pos, n, &f->out[f->n_out]) != NATTER_OK) {
            printf("client wrote a bad frame\n");
            failed++;
            break;
        }
        f->n_out++;
        pos += n;
    }
    return f->n_out;
}

/* Feeds bytes as the server, in pieces of `step` bytes (0: all at once). */
static void feed(fake *f, const uint8_t *bytes, size_t len, size_t step)
{
    while (len > 0) {
        uint8_t *room;
        size_t space = natter_session_rx_space(&f->s, &room), n = step && step < len ? step : len;
        if (n > space) n = space;
        if (n == 0) break;
        memcpy(room, bytes, n);
        natter_session_rx_done(&f->s, n, f->now);
        bytes += n, len -= n;
    }
}

static void server(fake *f, const natter_frame *fr)
{
    uint8_t buf[1024];
    size_t len;
    CHECK(natter_frame_encode(fr, buf, sizeof buf, &len) == NATTER_OK);
    feed(f, buf, len, 0);
}

static void advance(fake *f, uint64_t ms)
{
    f->now += ms;
    natter_session_tick(&f->s, f->now);
}

static natter_frame ready(uint64_t inbox_head)
{
    natter_frame r;
    memset(&r, 0, sizeof r);
    r.type = NATTER_READY;
    r.as.ready.version = 1;
    r.as.ready.max_frame_size = 65536;
    r.as.ready.heartbeat_ms = HB;
    r.as.ready.session = 7;
    r.as.ready.user = B("alice");
    r.as.ready.device = B("c1");
    r.as.ready.inbox_head = inbox_head;
    return r;
}

static natter_frame deliver(uint64_t inbox_seq, const char *body)
{
    natter_frame d;
    memset(&d, 0, sizeof d);
    d.type = NATTER_DELIVER;
    d.as.deliver.inbox_seq = inbox_seq;
    d.as.deliver.conversation = B("d/alice/bob");
    d.as.deliver.event.seq = inbox_seq;
    d.as.deliver.event.sender = B("bob");
    d.as.deliver.event.device = B("b1");
    d.as.deliver.event.client_msg_id = 9;
    d.as.deliver.event.content_type = B("");
    d.as.deliver.event.body = B(body);
    return d;
}

static natter_frame simple(uint64_t type, uint64_t a, uint64_t b)
{
    natter_frame x;
    memset(&x, 0, sizeof x);
    x.type = type;
    switch (type) {
    case NATTER_SYNCED: x.as.synced.request = a, x.as.synced.inbox_head = b; break;
    case NATTER_PING:
    case NATTER_PONG: x.as.ping.nonce = a; break;
    case NATTER_SEND_ACK: x.as.send_ack.request = a, x.as.send_ack.seq = b; break;
    case NATTER_ERROR: x.as.error.request = a, x.as.error.code = b; break;
    case NATTER_GOAWAY:
        x.as.goaway.code = NATTER_SHUTTING_DOWN, x.as.goaway.reconnect_ms = a;
        break;
    default: break;
    }
    return x;
}

static bool logged(fake *f, const char *what)
{
    return strstr(f->log, what) != NULL;
}

/* Connects and answers READY; returns the RESUME's request id. */
static uint64_t connect_ready(fake *f, uint64_t inbox_head)
{
    natter_frame r = ready(inbox_head);
    CHECK(f->s.state == NATTER_S_CONNECTING);
    natter_session_opened(&f->s, f->now);
    CHECK(sent(f) == 1 && f->out[0].type == NATTER_HELLO);
    server(f, &r);
    CHECK(sent(f) >= 1 && f->out[0].type == NATTER_RESUME);
    return f->out[0].as.resume.request;
}

/* Connects up to SYNCED. */
static void connect_live(fake *f, uint64_t inbox_head)
{
    natter_frame sy = simple(NATTER_SYNCED, connect_ready(f, inbox_head), inbox_head);
    server(f, &sy);
    CHECK(f->s.state == NATTER_S_LIVE);
}

/* Drops the connection and waits out the reconnect delay. */
static void reconnect_wait(fake *f)
{
    uint64_t due;
    natter_session_closed(&f->s, f->now);
    CHECK(f->s.state == NATTER_S_WAITING);
    due = natter_session_deadline(&f->s);
    advance(f, due - f->now);
    CHECK(f->s.state == NATTER_S_CONNECTING);
}

static void test_handshake(void)
{
    fake f;
    natter_frame r = ready(45);
    setup(&f, 40, 0);
    natter_session_opened(&f.s, f.now);
    CHECK(sent(&f) == 1);
    CHECK(f.out[0].type == NATTER_HELLO);
    CHECK(f.out[0].as.hello.min_version == 1 && f.out[0].as.hello.max_version == 1);
    CHECK(f.out[0].as.hello.features == 0); /* spec 12 */
    CHECK(f.out[0].as.hello.max_frame_size == 4096);
    CHECK(f.out[0].as.hello.token.len == 9 && !memcmp(f.out[0].as.hello.token.ptr, "tok-alice", 9));
    advance(&f, 5000); /* nothing, not even a PING, before READY [NWP-5.1-2] */
    CHECK(sent(&f) == 0);
    server(&f, &r);
    /* RESUME from the stored cursor, then the stored cursor ACKed again. */
    CHECK(sent(&f) == 2);
    CHECK(f.out[0].type == NATTER_RESUME && f.out[0].as.resume.after == 40);
    CHECK(f.out[1].type == NATTER_ACK && f.out[1].as.ack.inbox_seq == 40);
    CHECK(f.s.state == NATTER_S_READY);
    r = simple(NATTER_SYNCED, f.out[0].as.resume.request + 1, 45); /* not our RESUME */
    server(&f, &r);
    CHECK(f.s.state == NATTER_S_READY);
    r = simple(NATTER_SYNCED, f.out[0].as.resume.request, 45);
    server(&f, &r);
    CHECK(f.s.state == NATTER_S_LIVE);
}

static void test_new_device_resumes_from_head(void)
{
    fake f;
    setup(&f, NATTER_NO_CURSOR, 0);
    connect_ready(&f, 42);
    CHECK(f.out[0].as.resume.after == 42);
    CHECK(logged(&f, "cursor 42;"));
}

static void test_handshake_timeout(void)
{
    fake f;
    setup(&f, 0, 0);
    natter_session_opened(&f.s, f.now);
    sent(&f);
    CHECK(natter_session_deadline(&f.s) == f.now + 10000);
    advance(&f, 9999);
    CHECK(f.s.state == NATTER_S_HELLO);
    advance(&f, 1);
    CHECK(f.s.state == NATTER_S_CLOSING);
}

static void test_deliver_ack_and_cursor(void)
{
    fake f;
    natter_frame d;
    setup(&f, 40, 0);
    connect_live(&f, 40);
    sent(&f);
    d = deliver(41, "one");
    server(&f, &d);
    d = deliver(42, "two");
    server(&f, &d);
    CHECK(logged(&f, "deliver 41 one; cursor 41; deliver 42 two; cursor 42;"));
    CHECK(sent(&f) == 0); /* ACKs are coalesced [NWP-6.2.4-1] */
    CHECK(natter_session_deadline(&f.s) == f.now + 200);
    advance(&f, 200);
    CHECK(sent(&f) == 1 && f.out[0].type == NATTER_ACK && f.out[0].as.ack.inbox_seq == 42);
    advance(&f, 200);
    CHECK(sent(&f) == 0);

    /* A replayed entry is not given to the application twice [NWP-6.2.3-3]. */
    f.log[0] = '\0';
    d = deliver(41, "one");
    server(&f, &d);
    CHECK(f.log[0] == '\0');

    /* A hole: the entry is held back and the inbox replays from the cursor. */
    d = deliver(44, "four");
    server(&f, &d);
    CHECK(f.log[0] == '\0' || !logged(&f, "deliver"));
    CHECK(sent(&f) == 1 && f.out[0].type == NATTER_RESUME && f.out[0].as.resume.after == 42);
    CHECK(f.s.state == NATTER_S_READY);
    d = deliver(43, "three");
    server(&f, &d);
    d = deliver(44, "four");
    server(&f, &d);
    CHECK(logged(&f, "deliver 43 three; cursor 43; deliver 44 four; cursor 44;"));

    /* A large group's live event (inbox_seq 0) passes without touching the cursor. */
    f.log[0] = '\0';
    d = deliver(0, "big");
    server(&f, &d);
    CHECK(strcmp(f.log, "deliver 0 big; ") == 0);
}

static void test_fragmented_input(void)
{
    fake f;
    uint8_t buf[512];
    size_t a, b;
    natter_frame d = deliver(1, "hello"), p = simple(NATTER_PING, 77, 0);
    setup(&f, 0, 0);
    connect_live(&f, 0);
    sent(&f);
    CHECK(natter_frame_encode(&d, buf, sizeof buf, &a) == NATTER_OK);
    CHECK(natter_frame_encode(&p, buf + a, sizeof buf - a, &b) == NATTER_OK);
    feed(&f, buf, a + b, 1); /* one byte at a time [NWP-3-8] */
    CHECK(strcmp(f.log + strlen(f.log) - strlen("deliver 1 hello; cursor 1; "),
                 "deliver 1 hello; cursor 1; ") == 0);
    CHECK(sent(&f) == 1 && f.out[0].type == NATTER_PONG && f.out[0].as.ping.nonce == 77);
}

static void test_heartbeat(void)
{
    fake f;
    natter_frame p;
    setup(&f, 0, 0);
    connect_live(&f, 0);
    sent(&f);
    advance(&f, HB - 1);
    CHECK(sent(&f) == 0);
    advance(&f, 1); /* idle for heartbeat_ms: PING [NWP-5.2-1] */
    CHECK(sent(&f) == 1 && f.out[0].type == NATTER_PING);
    p = simple(NATTER_PONG, f.out[0].as.ping.nonce, 0);
    server(&f, &p);
    advance(&f, HB);
    CHECK(sent(&f) == 1 && f.out[0].type == NATTER_PING);
    /* The server answers PING with PONG, in order. */
    p = simple(NATTER_PING, 5, 0);
    server(&f, &p);
    CHECK(sent(&f) == 1 && f.out[0].type == NATTER_PONG && f.out[0].as.ping.nonce == 5);
    /* Then silence: dead after 2 x heartbeat_ms without a byte [NWP-5.2-3]. */
    advance(&f, 2 * HB - 1);
    CHECK(f.s.state == NATTER_S_LIVE);
    sent(&f);
    advance(&f, 1);
    CHECK(f.s.state == NATTER_S_CLOSING);
    CHECK(sent(&f) == 0); /* nothing written to a dead connection */
    natter_session_closed(&f.s, f.now);
    /* Backoff with jitter: 1 s halved and jittered, then doubling [NWP-5.5-3]. */
    CHECK(natter_session_deadline(&f.s) >= f.now + 500);
    CHECK(natter_session_deadline(&f.s) <= f.now + 1000);
    advance(&f, natter_session_deadline(&f.s) - f.now);
    CHECK(f.s.state == NATTER_S_CONNECTING);
    natter_session_closed(&f.s, f.now); /* the connect failed */
    CHECK(natter_session_deadline(&f.s) >= f.now + 1000);
    CHECK(natter_session_deadline(&f.s) <= f.now + 2000);
}

static void test_resend_after_reconnect(void)
{
    fake f;
    uint8_t first[256], again[256];
    size_t first_len, again_len;
    natter_frame a;
    const uint8_t *p;
    setup(&f, 0, 0);
    /* Queued before the connection is up; nothing may go before READY. */
    CHECK(natter_session_send(&f.s, B("d/alice/bob"), 1001, B(""), B("hi bob")) == NATTER_OK);
    CHECK(natter_session_send(&f.s, B("d/alice/bob"), 0, B(""), B("x")) == NATTER_E_INVALID);
    CHECK(natter_session_pending(&f.s) == 1);
    CHECK(natter_session_tx_pending(&f.s, &p) == 0);
    connect_ready(&f, 0);
    CHECK(f.n_out == 2 && f.out[1].type == NATTER_SEND);
    CHECK(f.out[1].as.send.client_msg_id == 1001 && f.out[1].as.send.kind == 0);
    CHECK(natter_frame_encode(&f.out[1], first, sizeof first, &first_len) == NATTER_OK);
    /* The connection dies before SEND_ACK: the outcome is unknown, so it goes again,
     * byte for byte the same [NWP-6.2.1-1]. */
    reconnect_wait(&f);
    connect_ready(&f, 0);
    CHECK(f.n_out == 2 && f.out[1].type == NATTER_SEND);
    CHECK(natter_frame_encode(&f.out[1], again, sizeof again, &again_len) == NATTER_OK);
    CHECK(again_len == first_len && memcmp(again, first, first_len) == 0);
    a = simple(NATTER_SEND_ACK, f.out[1].as.send.request, 6);
    a.as.send_ack.duplicate = true;
    server(&f, &a);
    server(&f, &a); /* a stray second answer is ignored */
    CHECK(strstr(f.log, "acked 1001 seq 6 dup; ") && !strstr(strstr(f.log, "acked") + 1, "acked"));
    CHECK(natter_session_pending(&f.s) == 0);
}

static void test_window_keeps_order(void)
{
    fake f;
    natter_frame a;
    uint64_t r1;
    setup(&f, 0, 2);
    connect_live(&f, 0);
    sent(&f);
    natter_session_send(&f.s, B("d/alice/bob"), 1, B(""), B("a"));
    natter_session_send(&f.s, B("d/alice/bob"), 2, B(""), B("b"));
    natter_session_send(&f.s, B("d/alice/bob"), 3, B(""), B("c"));
    CHECK(natter_session_deadline(&f.s) == 0); /* SENDs go out at the next tick: now */
    advance(&f, 0);
    CHECK(sent(&f) == 2);
    CHECK(f.out[0].as.send.client_msg_id == 1 && f.out[1].as.send.client_msg_id == 2);
    r1 = f.out[0].as.send.request;
    a = simple(NATTER_SEND_ACK, r1, 1);
    server(&f, &a);
    CHECK(sent(&f) == 1 && f.out[0].as.send.client_msg_id == 3);
}

static void test_request_errors(void)
{
    fake f;
    natter_frame e;
    uint64_t r1, r2;
    setup(&f, 0, 0);
    connect_live(&f, 0);
    sent(&f);
    natter_session_send(&f.s, B("d/alice/bob"), 1, B(""), B("a"));
    natter_session_send(&f.s, B("d/alice/bob"), 2, B(""), B("b"));
    advance(&f, 0);
    CHECK(sent(&f) == 2);
    r1 = f.out[0].as.send.request, r2 = f.out[1].as.send.request;
    /* RATE_LIMITED: again, unchanged, but not before retry_after_ms [NWP-7.12-1]. */
    e = simple(NATTER_ERROR, r1, NATTER_RATE_LIMITED);
    e.as.error.retry_after_ms = 500;
    server(&f, &e);
    CHECK(natter_session_deadline(&f.s) == f.now + 500);
    advance(&f, 499);
    CHECK(sent(&f) == 0);
    advance(&f, 1);
    CHECK(sent(&f) == 1 && f.out[0].as.send.client_msg_id == 1 && f.out[0].as.send.request == r1);
    /* A refusal for good leaves the outbox and tells the application. */
    e = simple(NATTER_ERROR, r2, NATTER_DUPLICATE_MISMATCH);
    server(&f, &e);
    CHECK(logged(&f, "refused 2 code 20;"));
    CHECK(natter_session_pending(&f.s) == 1);
    /* An answer to no request of ours changes nothing [NWP-6.1.6-3]. */
    e = simple(NATTER_ERROR, 999, NATTER_INVALID_REQUEST);
    server(&f, &e);
    CHECK(f.s.state == NATTER_S_LIVE && natter_session_pending(&f.s) == 1);
}

static void test_goaway(void)
{
    fake f;
    natter_frame g = simple(NATTER_GOAWAY, 2000, 0), a;
    uint64_t r1;
    setup(&f, 0, 0);
    connect_live(&f, 0);
    sent(&f);
    natter_session_send(&f.s, B("d/alice/bob"), 1, B(""), B("a"));
    advance(&f, 0);
    CHECK(sent(&f) == 1);
    r1 = f.out[0].as.send.request;
    server(&f, &g);
    CHECK(f.s.state == NATTER_S_DRAINING);
    /* No new requests on this connection [NWP-5.4-2] ... */
    natter_session_send(&f.s, B("d/alice/bob"), 2, B(""), B("b"));
    advance(&f, 0);
    CHECK(sent(&f) == 0);
    /* ... but answers to those in flight still count. */
    a = simple(NATTER_SEND_ACK, r1, 1);
    server(&f, &a);
    CHECK(logged(&f, "acked 1 seq 1;"));
    /* The server closes; the client comes back within reconnect_ms. */
    natter_session_closed(&f.s, f.now);
    CHECK(natter_session_deadline(&f.s) <= f.now + 2000);
    advance(&f, natter_session_deadline(&f.s) - f.now);
    CHECK(f.s.state == NATTER_S_CONNECTING);
    connect_ready(&f, 0);
    CHECK(f.n_out == 2 && f.out[1].type == NATTER_SEND && f.out[1].as.send.client_msg_id == 2);

    /* A server that never closes after GOAWAY is left after handshake_ms. */
    setup(&f, 0, 0);
    connect_live(&f, 0);
    server(&f, &g);
    a = simple(NATTER_PONG, 1, 0);
    for (int i = 0; i < 10; i++) {
        advance(&f, 1000);
        server(&f, &a);
    }
    CHECK(f.s.state == NATTER_S_CLOSING);
}

static void test_connection_errors(void)
{
    fake f;
    natter_frame e = simple(NATTER_ERROR, 0, NATTER_UNAUTHENTICATED);
    const uint8_t *p;
    setup(&f, 0, 0);
    natter_session_opened(&f.s, f.now);
    sent(&f);
    server(&f, &e);
    CHECK(f.s.state == NATTER_S_CLOSING);
    CHECK(natter_session_tx_pending(&f.s, &p) == 0); /* nothing after it [NWP-5.5-1] */
    natter_session_closed(&f.s, f.now);
    CHECK(f.s.state == NATTER_S_STOPPED); /* not again with this token [NWP-5.5-3] */
    CHECK(logged(&f, "state 7/4;"));
    CHECK(natter_session_deadline(&f.s) == UINT64_MAX);
    natter_session_set_token(&f.s, B("tok-new"), f.now);
    CHECK(f.s.state == NATTER_S_CONNECTING);

    /* SHUTTING_DOWN, and an unknown code below 0x10, close and reconnect [NWP-10-2]. */
    for (uint64_t code = NATTER_SHUTTING_DOWN; code <= 0x0c; code += 3) {
        setup(&f, 0, 0);
        connect_live(&f, 0);
        e = simple(NATTER_ERROR, 0, code);
        server(&f, &e);
        CHECK(f.s.state == NATTER_S_CLOSING);
        natter_session_closed(&f.s, f.now);
        CHECK(f.s.state == NATTER_S_WAITING);
    }
    /* INTERNAL_ERROR for one request leaves the connection open (spec 10). */
    setup(&f, 0, 0);
    connect_live(&f, 0);
    e = simple(NATTER_ERROR, 5, NATTER_INTERNAL_ERROR);
    server(&f, &e);
    CHECK(f.s.state == NATTER_S_LIVE);
}

static void test_unknown_frames_skipped(void)
{
    fake f;
    /* Unknown types 0x7f and 0x1234, then DONE and RECEIPT, which the profile ignores. */
    static const uint8_t skipped[] = {0x07, 0x40, 0x7f, 1, 2, 3, 4, 5, 0x02, 0x52, 0x34,
                                      0x02, 0x07, 0x03, 0x07, 0x15, 0x01, 0x78, 0x01, 0x79,
                                      0x06, 0x05};
    natter_frame d = deliver(1, "after"), g;
    setup(&f, 0, 0);
    connect_live(&f, 0);
    sent(&f);
    feed(&f, skipped, sizeof skipped, 0);
    CHECK(f.s.state == NATTER_S_LIVE);
    CHECK(sent(&f) == 0);
    server(&f, &d);
    CHECK(logged(&f, "deliver 1 after;"));
    /* A GAP of a conversation is reported and otherwise ignored. */
    memset(&g, 0, sizeof g);
    g.type = NATTER_GAP;
    g.as.gap.conversation = B("g/big");
    g.as.gap.from = g.as.gap.to = 9;
    server(&f, &g);
    CHECK(logged(&f, "gap 'g/big' 9..9;") && f.s.state == NATTER_S_LIVE);
}

static void test_inbox_gaps(void)
{
    fake f;
    natter_frame g, sy;
    uint64_t req;
    setup(&f, 40, 0);
    req = connect_ready(&f, 120);
    memset(&g, 0, sizeof g);
    g.type = NATTER_GAP;
    g.as.gap.conversation = B("");
    g.as.gap.from = 41, g.as.gap.to = 99;
    /* Before SYNCED: pruned entries; the cursor moves past them [NWP-7.3-4]. */
    server(&f, &g);
    CHECK(logged(&f, "gap '' 41..99; cursor 99;"));
    advance(&f, 200);
    CHECK(sent(&f) == 1 && f.out[0].type == NATTER_ACK && f.out[0].as.ack.inbox_seq == 99);
    sy = simple(NATTER_SYNCED, req, 120);
    server(&f, &sy);
    /* After SYNCED: dropped under pressure; replay from the cursor [NWP-7.11-1]. */
    g.as.gap.from = 100, g.as.gap.to = 110;
    server(&f, &g);
    CHECK(sent(&f) == 1 && f.out[0].type == NATTER_RESUME && f.out[0].as.resume.after == 99);
}

static void test_conversation_gap_stands_for_an_entry(void)
{
    fake f;
    natter_frame d = deliver(41, "a"), g;
    const uint8_t *p;
    setup(&f, 40, 0);
    connect_live(&f, 40);
    sent(&f);
    server(&f, &d);
    /* Entry 42 did not fit 4096 bytes: a GAP of its conversation takes its place [NWP-6.2.3-4]. */
    memset(&g, 0, sizeof g);
    g.type = NATTER_GAP;
    g.as.gap.conversation = B("d/alice/bob");
    g.as.gap.from = g.as.gap.to = 17;
    server(&f, &g);
    d = deliver(43, "c");
    server(&f, &d);
    CHECK(logged(&f, "deliver 41 a; cursor 41; gap 'd/alice/bob' 17..17; "
                     "deliver 43 c; cursor 43;"));
    CHECK(f.s.state == NATTER_S_LIVE && natter_session_tx_pending(&f.s, &p) == 0); /* no RESUME */
    /* Without a GAP, the same jump is a hole. */
    d = deliver(45, "e");
    server(&f, &d);
    CHECK(!logged(&f, "deliver 45") && f.s.state == NATTER_S_READY);
}

static void test_cursor_beyond_head(void)
{
    fake f;
    setup(&f, 50, 0);
    connect_ready(&f, 42); /* the server's inbox is behind the stored cursor: start at its head */
    CHECK(f.out[0].as.resume.after == 42 && logged(&f, "cursor 42;"));
}

static void test_violations(void)
{
    static const struct {
        uint8_t bytes[8];
        size_t len;
        uint64_t code;
        int live;
    } cases[] = {
        {{0x02, 0x13, 0x01}, 3, NATTER_PROTOCOL_VIOLATION, 1},       /* ACK: a client frame */
        {{0x02, 0x40, 0x64, 0x01}, 4, NATTER_PROTOCOL_VIOLATION, 1}, /* a link frame */
        {{0x03, 0x03, 0x40, 0x07}, 4, NATTER_PROTOCOL_VIOLATION, 1}, /* non-minimal varint */
        {{0x04, 0x11, 0x01, 0x02, 0x03}, 5, NATTER_PROTOCOL_VIOLATION, 1}, /* truncated */
        {{0x00}, 1, NATTER_PROTOCOL_VIOLATION, 1},                   /* empty frame */
        {{0x50, 0x01}, 2, NATTER_FRAME_TOO_LARGE, 1},                /* 4097 > 4096 */
        {{0x02, 0x19, 0x01}, 3, NATTER_PROTOCOL_VIOLATION, 0},       /* SYNCED before READY */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fake f;
        setup(&f, 0, 0);
        if (cases[i].live) connect_live(&f, 0);
        else natter_session_opened(&f.s, f.now);
        sent(&f);
        feed(&f, cases[i].bytes, cases[i].len, 0);
        CHECK(f.s.state == NATTER_S_CLOSING);
        /* The client says why before it closes [NWP-3-7]. */
        CHECK(sent(&f) == 1 && f.out[0].type == NATTER_ERROR);
        CHECK(f.out[0].as.error.code == cases[i].code && f.out[0].as.error.request == 0);
    }
    {
        fake f;
        natter_frame r = ready(0);
        setup(&f, 0, 0);
        connect_live(&f, 0);
        server(&f, &r); /* a second READY */
        CHECK(f.s.state == NATTER_S_CLOSING);
    }
}

static void test_send_from_a_callback(void)
{
    fake f;
    natter_frame d = deliver(1, "ping?");
    setup(&f, 0, 0);
    connect_live(&f, 0);
    sent(&f);
    f.echo = 1;
    server(&f, &d);
    advance(&f, 0);
    CHECK(sent(&f) == 1 && f.out[0].type == NATTER_SEND && f.out[0].as.send.client_msg_id == 501);
    CHECK(f.out[0].as.send.body.len == 5 && !memcmp(f.out[0].as.send.body.ptr, "ping?", 5));
}

static void test_tx_backpressure(void)
{
    fake f;
    uint8_t pings[600];
    int pongs = 0, rounds = 0, in_order = 1;
    setup(&f, 0, 0);
    connect_live(&f, 0);
    sent(&f);
    for (int i = 0; i < 200; i++) /* 200 PINGs of 3 bytes, nonces 1..50 over and over */
        pings[3 * i] = 2, pings[3 * i + 1] = NATTER_PING, pings[3 * i + 2] = (uint8_t)(i % 50 + 1);
    feed(&f, pings, sizeof pings, 0);
    /* 200 PONGs do not fit the 512 bytes of tx: the session stops reading, and goes on as
     * tx drains, answering every PING in order [NWP-5.2-3]. */
    while (pongs < 200 && rounds++ < 20) {
        const uint8_t *p;
        size_t len = natter_session_tx_pending(&f.s, &p), pos = 0, n;
        natter_frame fr;
        while (pos < len && natter_frame_split(p + pos, len - pos, 65536, &n) == NATTER_OK &&
               natter_frame_decode(p + pos, n, &fr) == NATTER_OK) {
            in_order &= fr.type == NATTER_PONG && fr.as.ping.nonce == (uint64_t)(pongs % 50 + 1);
            pongs++;
            pos += n;
        }
        natter_session_tx_done(&f.s, len);
        advance(&f, 1);
    }
    CHECK(pongs == 200 && in_order && rounds > 1);
}

static void test_limits(void)
{
    fake f;
    static uint8_t big[600];
    natter_bytes body = {big, sizeof big};
    int queued = 0;
    setup(&f, 0, 0);
    memset(big, 'x', sizeof big);
    /* A SEND larger than tx can never go out: refused at once. */
    CHECK(natter_session_send(&f.s, B("d/alice/bob"), 1, B(""), body) == NATTER_E_NO_SPACE);
    body.len = 100;
    while (natter_session_send(&f.s, B("d/alice/bob"), (uint64_t)queued + 1, B(""), body) == 0)
        queued++;
    CHECK(queued > 3 && natter_session_pending(&f.s) == (size_t)queued); /* then the outbox fills */
    CHECK(natter_session_send(&f.s, B("d/alice/\xff"), 99, B(""), body) != NATTER_OK);
}

int main(void)
{
    test_handshake();
    test_new_device_resumes_from_head();
    test_handshake_timeout();
    test_deliver_ack_and_cursor();
    test_fragmented_input();
    test_heartbeat();
    test_resend_after_reconnect();
    test_window_keeps_order();
    test_request_errors();
    test_goaway();
    test_connection_errors();
    test_unknown_frames_skipped();
    test_inbox_gaps();
    test_conversation_gap_stands_for_an_entry();
    test_cursor_beyond_head();
    test_violations();
    test_send_from_a_callback();
    test_tx_backpressure();
    test_limits();
    printf("session: sizeof(natter_session) = %zu bytes\n", sizeof(natter_session));
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
