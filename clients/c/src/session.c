/*
 * The client session of the minimal profile (spec 12): HELLO/READY, RESUME from a persisted
 * cursor, DELIVER/ACK, SEND until SEND_ACK across reconnects, heartbeats, GOAWAY and errors.
 * No I/O and no clock: the caller moves bytes and passes the time in.
 */
#include <string.h>

#include "outbox.h"

#define VERSION 1
/* Room kept free in tx for the frames a received one may need (PONG, ACK, RESUME, ERROR). */
#define CONTROL_ROOM 32
#define FOREVER UINT64_MAX

static bool connected(const natter_session *s)
{
    return s->state >= NATTER_S_HELLO && s->state <= NATTER_S_DRAINING;
}

static void set_state(natter_session *s, int state, uint64_t code)
{
    if (s->state == state) return;
    s->state = state;
    if (s->cfg.cb.on_state) s->cfg.cb.on_state(s->cfg.cb.user, state, code);
}

/* xorshift32: jitter needs spread, not secrecy. */
static uint32_t rnd(natter_session *s)
{
    s->rng ^= s->rng << 13;
    s->rng ^= s->rng >> 17;
    s->rng ^= s->rng << 5;
    return s->rng;
}

static size_t tx_room(natter_session *s)
{
    if (s->tx_head > 0) {
        memmove(s->cfg.tx_buf, s->cfg.tx_buf + s->tx_head, s->tx_tail - s->tx_head);
        s->tx_tail -= s->tx_head;
        s->tx_head = 0;
    }
    return s->cfg.tx_cap - s->tx_tail;
}

static int queue(natter_session *s, const natter_frame *f, uint64_t now)
{
    size_t len;
    size_t room = tx_room(s);
    int r = natter_frame_encode(f, s->cfg.tx_buf + s->tx_tail, room, &len);
    if (r == NATTER_OK) {
        s->tx_tail += len;
        s->last_tx = now;
    }
    return r;
}

/* Stops using the connection: with an ERROR for the server first [NWP-3-7], or silently
 * after the server's connection error [NWP-5.5-1] or a dead transport. */
static void close_with(natter_session *s, uint64_t code, bool tell, uint64_t now)
{
    natter_frame f;
    s->tx_head = s->tx_tail = 0;
    if (tell) {
        memset(&f, 0, sizeof f);
        f.type = NATTER_ERROR;
        f.as.error.code = code;
        queue(s, &f, now);
    }
    s->close_code = code;
    set_state(s, NATTER_S_CLOSING, code);
}

/* Asks for the inbox after the cursor [NWP-6.2.9-1]; again after a hole [NWP-6.2.11-1]. */
static void resume(natter_session *s, uint64_t now)
{
    natter_frame f;
    f.type = NATTER_RESUME;
    f.as.resume.request = s->next_request++;
    f.as.resume.after = s->cursor;
    if (queue(s, &f, now) != NATTER_OK) return; /* CONTROL_ROOM makes this unreachable */
    s->resume_request = f.as.resume.request;
    s->gap_skips = 0;
    set_state(s, NATTER_S_READY, 0);
}

/* Drops a SEND for good and tells the application. */
static void refuse(natter_session *s, size_t off, const natter_entry *e, const natter_error *err)
{
    natter_outbox_remove(s, off, e);
    if (s->cfg.cb.on_send_error) s->cfg.cb.on_send_error(s->cfg.cb.user, e->client_msg_id, err);
}

/* Writes what is due: the coalesced ACK, then waiting SENDs in order, within the window. */
static void pump(natter_session *s, uint64_t now)
{
    natter_entry e;
    size_t off = 0, in_flight = 0, len;
    natter_frame f;
    if (s->state != NATTER_S_READY && s->state != NATTER_S_LIVE && s->state != NATTER_S_DRAINING)
        return;
    if (s->acked < s->cursor && now >= s->ack_due && tx_room(s) >= CONTROL_ROOM) {
        f.type = NATTER_ACK;
        f.as.ack.inbox_seq = s->cursor;
        if (queue(s, &f, now) == NATTER_OK) s->acked = s->cursor;
    }
    s->retry_at = FOREVER;
    if (s->state == NATTER_S_DRAINING) return; /* no new requests after GOAWAY [NWP-5.4-2] */
    for (; natter_outbox_get(s, off, &e); off = natter_outbox_next(off, &e))
        in_flight += e.sent;
    for (off = 0; natter_outbox_get(s, off, &e) && in_flight < s->cfg.max_in_flight;) {
        const uint8_t *frame = natter_outbox_frame(s, off);
        if (e.sent) {
            off = natter_outbox_next(off, &e);
            continue;
        }
        if (now < e.retry_at) { /* later SENDs wait behind it, to keep their order */
            s->retry_at = e.retry_at;
            break;
        }
        if (natter_frame_split(frame, e.len, s->tx_max, &len) != NATTER_OK) {
            /* Longer than the server accepts [NWP-5.1-5]: it can never be sent. */
            natter_error err = {0, NATTER_FRAME_TOO_LARGE, 0, {NULL, 0}};
            err.request = e.request;
            refuse(s, off, &e, &err);
            continue;
        }
        if (tx_room(s) < e.len) break;
        memcpy(s->cfg.tx_buf + s->tx_tail, frame, e.len);
        s->tx_tail += e.len;
        s->last_tx = now;
        e.sent = 1;
        natter_outbox_set(s, off, &e);
        in_flight++;
        off = natter_outbox_next(off, &e);
    }
}

static void on_ready(natter_session *s, const natter_ready *r, uint64_t now)
{
    if (r->version != VERSION) { /* outside the range HELLO offered [NWP-5.1-3] */
        s->fatal = true;
        close_with(s, NATTER_UNSUPPORTED_VERSION, true, now);
        return;
    }
    if (r->max_frame_size < NATTER_MIN_MAX_FRAME_SIZE) { /* [NWP-3-4] */
        close_with(s, NATTER_PROTOCOL_VIOLATION, true, now);
        return;
    }
    s->tx_max = r->max_frame_size;
    /* At least 1 s [NWP-6.1.2-1]: a broken value must not make the client spin. */
    s->heartbeat_ms = r->heartbeat_ms < 1000 ? 1000 : r->heartbeat_ms;
    s->backoff_ms = s->cfg.backoff_min_ms;
    if (!s->has_cursor || s->cursor > r->inbox_head) {
        /* A new device starts at the head [NWP-6.1.2-2]. A cursor beyond the head belongs to
         * an inbox this server does not have (a reset deployment): entries up to it would be
         * taken for ones already seen, so start over at the head too. */
        s->cursor = s->acked = r->inbox_head;
        s->has_cursor = true;
        if (s->cfg.cb.save_cursor) s->cfg.cb.save_cursor(s->cfg.cb.user, s->cursor);
    } else if (s->cursor > 0) {
        /* ACK the stored cursor again: the last ACK may have died with the connection, and
         * the server derives delivered receipts from ACKs [NWP-7.4-2]. */
        s->acked = s->cursor - 1;
        s->ack_due = now;
    }
    resume(s, now);
}

/* Gives each inbox entry to the application once, in order, then saves the cursor. */
static void on_deliver(natter_session *s, const natter_deliver *d, uint64_t now)
{
    if (d->inbox_seq != 0) {
        if (d->inbox_seq <= s->cursor) return; /* seen before this reconnect [NWP-6.2.3-3] */
        /* Entries come without holes, except that a conversation GAP may stand in for one
         * that did not fit [NWP-6.2.3-2] [NWP-6.2.3-4]. On a hole, replay from the cursor
         * (unless a replay is under way, or the connection takes no requests): the entry
         * comes again, and the cursor never moves past one not processed. */
        if (d->inbox_seq > s->cursor + 1 + s->gap_skips) {
            if (!s->resume_request && s->state != NATTER_S_DRAINING) resume(s, now);
            return;
        }
        s->gap_skips = 0;
    }
    if (s->cfg.cb.on_deliver) s->cfg.cb.on_deliver(s->cfg.cb.user, d);
    if (d->inbox_seq == 0) return; /* a large group's live event: no inbox entry [NWP-7.3-5] */
    s->cursor = d->inbox_seq;
    if (s->cfg.cb.save_cursor) s->cfg.cb.save_cursor(s->cfg.cb.user, s->cursor);
    /* ACK after storing, coalesced [NWP-6.2.4-1]. */
    if (s->acked + 1 == s->cursor) s->ack_due = now + s->cfg.ack_delay_ms;
}

static void on_gap(natter_session *s, const natter_gap *g, uint64_t now)
{
    if (g->from > g->to) return; /* [NWP-6.2.11-1] */
    if (s->cfg.cb.on_gap) s->cfg.cb.on_gap(s->cfg.cb.user, g);
    if (g->conversation.len != 0) { /* events to read from history, if the app needs them */
        s->gap_skips++;
        return;
    }
    if (s->state == NATTER_S_READY && g->from == s->cursor + 1) {
        /* Pruned before this replay [NWP-7.3-4]: those entries are gone; move past them. */
        s->cursor = g->to;
        if (s->cfg.cb.save_cursor) s->cfg.cb.save_cursor(s->cfg.cb.user, s->cursor);
        s->ack_due = now + s->cfg.ack_delay_ms;
    } else if (s->state == NATTER_S_LIVE) {
        resume(s, now); /* dropped under pressure: replay them [NWP-7.11-1] */
    }
}

static bool retryable(uint64_t code)
{
    return code == NATTER_RATE_LIMITED || code == NATTER_UNAVAILABLE ||
           code == NATTER_INTERNAL_ERROR;
}

static void on_error(natter_session *s, const natter_error *err, uint64_t now)
{
    natter_entry e;
    size_t off;
    /* Codes below 0x10 close the connection [NWP-10-1], except INTERNAL_ERROR for one
     * request (spec 10); unknown ones count as INTERNAL_ERROR [NWP-10-2]. */
    if (err->code < 0x10 && !(err->code == NATTER_INTERNAL_ERROR && err->request != 0)) {
        /* Never again with the same HELLO [NWP-5.5-3]. */
        s->fatal = err->code == NATTER_UNSUPPORTED_VERSION ||
                   err->code == NATTER_UNAUTHENTICATED || err->code == NATTER_TOKEN_EXPIRED;
        close_with(s, err->code, false, now);
    } else if (natter_outbox_find(s, err->request, &off, &e)) {
        if (retryable(err->code)) {
            /* Not sooner than retry_after_ms [NWP-7.12-1]; without one, after the minimum
             * backoff, so that a failing server is not answered at network speed. */
            e.sent = 0;
            e.retry_at = now + (err->retry_after_ms ? err->retry_after_ms : s->cfg.backoff_min_ms);
            natter_outbox_set(s, off, &e);
        } else {
            refuse(s, off, &e, err);
        }
    } else if (err->request != 0 && err->request == s->resume_request) {
        close_with(s, err->code, false, now); /* retry the RESUME on a new connection */
    }
    /* An answer to no request of ours is ignored [NWP-6.1.6-3]. */
}

static void on_send_ack(natter_session *s, const natter_send_ack *ack)
{
    natter_entry e;
    size_t off;
    if (!natter_outbox_find(s, ack->request, &off, &e)) return;
    natter_outbox_remove(s, off, &e);
    if (s->cfg.cb.on_send_ack) s->cfg.cb.on_send_ack(s->cfg.cb.user, e.client_msg_id, ack);
}

static void handle(natter_session *s, const natter_frame *f, uint64_t now)
{
    natter_frame out;
    char origin = natter_type_origin(f->type);
    /* A client frame or a link frame from the server is a violation, not an unknown frame;
     * so is anything but the handshake's answer before READY [NWP-5.3-4]. */
    bool early = s->state == NATTER_S_HELLO && f->type != NATTER_READY &&
                 f->type != NATTER_ERROR && f->type != NATTER_PING && f->type != NATTER_PONG &&
                 f->type != NATTER_GOAWAY;
    if (origin == 'C' || origin == 'L' || (origin && early) ||
        (f->type == NATTER_READY && s->state != NATTER_S_HELLO)) {
        close_with(s, NATTER_PROTOCOL_VIOLATION, true, now);
        return;
    }
    switch (f->type) {
    case NATTER_READY: on_ready(s, &f->as.ready, now); break;
    case NATTER_SYNCED:
        if (f->as.synced.request == s->resume_request && s->state == NATTER_S_READY) {
            s->resume_request = 0;
            set_state(s, NATTER_S_LIVE, 0);
        }
        break;
    case NATTER_PING: /* [NWP-5.2-3]; nothing goes out between HELLO and READY [NWP-5.1-2] */
        if (s->state == NATTER_S_HELLO) break;
        out.type = NATTER_PONG;
        out.as.ping.nonce = f->as.ping.nonce;
        queue(s, &out, now);
        break;
    case NATTER_DELIVER: on_deliver(s, &f->as.deliver, now); break;
    case NATTER_SEND_ACK: on_send_ack(s, &f->as.send_ack); break;
    case NATTER_ERROR: on_error(s, &f->as.error, now); break;
    case NATTER_GAP: on_gap(s, &f->as.gap, now); break;
    case NATTER_GOAWAY: /* reconnect within reconnect_ms once the server closes [NWP-5.4-2] */
        s->reconnect_ms = f->as.goaway.reconnect_ms ? f->as.goaway.reconnect_ms : 1;
        s->deadline_at = now + s->cfg.handshake_ms; /* in case it never closes */
        set_state(s, NATTER_S_DRAINING, f->as.goaway.code);
        break;
    default: break; /* PONG, frames the profile ignores, unknown types [NWP-3-6] */
    }
}

/* Acts on every complete frame in rx, while tx has room for what they may answer. */
static void process(natter_session *s, uint64_t now)
{
    size_t pos = 0, len;
    natter_frame f;
    while (connected(s) && tx_room(s) >= CONTROL_ROOM) {
        int r = natter_frame_split(s->cfg.rx_buf + pos, s->rx_len - pos, s->rx_max, &len);
        if (r == NATTER_INCOMPLETE) break;
        if (r == NATTER_OK) r = natter_frame_decode(s->cfg.rx_buf + pos, len, &f);
        if (r != NATTER_OK) { /* no resynchronizing after malformed input [NWP-3-7] */
            close_with(s, r == NATTER_E_FRAME_TOO_LARGE ? NATTER_FRAME_TOO_LARGE
                                                        : NATTER_PROTOCOL_VIOLATION, true, now);
            break;
        }
        handle(s, &f, now);
        pos += len;
    }
    memmove(s->cfg.rx_buf, s->cfg.rx_buf + pos, s->rx_len - pos);
    s->rx_len -= pos;
}

int natter_session_init(natter_session *s, const natter_config *cfg, uint64_t now_ms)
{
    memset(s, 0, sizeof *s);
    if (!cfg->rx_buf || cfg->rx_cap < NATTER_MIN_MAX_FRAME_SIZE + 4 || !cfg->tx_buf ||
        cfg->tx_cap < 2 * CONTROL_ROOM)
        return NATTER_E_INVALID;
    s->cfg = *cfg;
    if (!s->cfg.max_in_flight) s->cfg.max_in_flight = 8;
    if (!s->cfg.ack_delay_ms) s->cfg.ack_delay_ms = 200;
    if (!s->cfg.handshake_ms) s->cfg.handshake_ms = 10000;
    if (!s->cfg.backoff_min_ms) s->cfg.backoff_min_ms = 1000;
    if (!s->cfg.backoff_max_ms) s->cfg.backoff_max_ms = 60000;
    /* The largest Length whose frame, prefix included, fits rx. */
    s->rx_max = cfg->rx_cap - 4 > NATTER_MAX_FRAME_SIZE_CAP ? NATTER_MAX_FRAME_SIZE_CAP
                                                           : cfg->rx_cap - 4;
    s->has_cursor = cfg->cursor != NATTER_NO_CURSOR;
    s->cursor = s->acked = s->has_cursor ? cfg->cursor : 0;
    s->next_request = s->next_nonce = 1;
    s->backoff_ms = s->cfg.backoff_min_ms;
    s->rng = cfg->seed ? cfg->seed : 0x9e3779b9u;
    s->retry_at = FOREVER;
    s->deadline_at = now_ms;
    s->state = NATTER_S_CONNECTING;
    return NATTER_OK;
}

void natter_session_opened(natter_session *s, uint64_t now_ms)
{
    natter_entry e;
    size_t off;
    natter_frame f;
    if (s->state != NATTER_S_CONNECTING) return;
    s->rx_len = s->tx_head = s->tx_tail = 0;
    s->tx_max = NATTER_DEFAULT_MAX_FRAME_SIZE; /* until READY says [NWP-3-3] */
    s->last_rx = s->last_tx = now_ms;
    s->deadline_at = now_ms + s->cfg.handshake_ms;
    s->resume_request = 0;
    /* The outcome of what was in flight is unknown: all of it goes again [NWP-5.4-2]. */
    for (off = 0; natter_outbox_get(s, off, &e); off = natter_outbox_next(off, &e)) {
        e.sent = 0;
        natter_outbox_set(s, off, &e);
    }
    memset(&f, 0, sizeof f);
    f.type = NATTER_HELLO; /* the minimal profile asks for no features (spec 12) */
    f.as.hello.min_version = f.as.hello.max_version = VERSION;
    f.as.hello.max_frame_size = s->rx_max;
    f.as.hello.token = s->cfg.token;
    f.as.hello.agent = s->cfg.agent;
    set_state(s, NATTER_S_HELLO, 0);
    if (queue(s, &f, now_ms) != NATTER_OK) { /* tx too small, or an agent not UTF-8 */
        s->fatal = true;
        close_with(s, NATTER_INTERNAL_ERROR, false, now_ms);
    }
}

void natter_session_closed(natter_session *s, uint64_t now_ms)
{
    uint64_t delay;
    if (s->state == NATTER_S_WAITING || s->state == NATTER_S_STOPPED) return;
    s->rx_len = s->tx_head = s->tx_tail = 0;
    s->resume_request = 0;
    if (s->fatal) {
        set_state(s, NATTER_S_STOPPED, s->close_code);
        return;
    }
    if (s->reconnect_ms) { /* after GOAWAY: anywhere in its window [NWP-5.4-2] */
        delay = rnd(s) % (s->reconnect_ms + 1);
        s->reconnect_ms = 0;
    } else { /* exponential backoff with jitter [NWP-5.5-3] */
        delay = s->backoff_ms / 2 + rnd(s) % (s->backoff_ms / 2 + 1);
        s->backoff_ms = s->backoff_ms * 2 > s->cfg.backoff_max_ms ? s->cfg.backoff_max_ms
                                                                  : s->backoff_ms * 2;
    }
    s->deadline_at = now_ms + delay;
    set_state(s, NATTER_S_WAITING, 0);
}

size_t natter_session_rx_space(natter_session *s, uint8_t **buf)
{
    *buf = s->cfg.rx_buf + s->rx_len;
    return connected(s) ? s->cfg.rx_cap - s->rx_len : 0;
}

void natter_session_rx_done(natter_session *s, size_t n, uint64_t now_ms)
{
    if (!connected(s)) return;
    s->rx_len += n;
    if (n) s->last_rx = now_ms;
    process(s, now_ms);
    pump(s, now_ms);
}

size_t natter_session_tx_pending(const natter_session *s, const uint8_t **buf)
{
    *buf = s->cfg.tx_buf + s->tx_head;
    return s->tx_tail - s->tx_head;
}

void natter_session_tx_done(natter_session *s, size_t n)
{
    s->tx_head += n;
    if (s->tx_head >= s->tx_tail) s->tx_head = s->tx_tail = 0;
}

void natter_session_tick(natter_session *s, uint64_t now)
{
    natter_frame f;
    switch (s->state) {
    case NATTER_S_WAITING:
        if (now >= s->deadline_at) set_state(s, NATTER_S_CONNECTING, 0);
        return;
    case NATTER_S_HELLO:
        if (now >= s->deadline_at) close_with(s, NATTER_IDLE_TIMEOUT, false, now);
        return;
    case NATTER_S_READY:
    case NATTER_S_LIVE:
    case NATTER_S_DRAINING:
        /* Silence for 2 x heartbeat_ms: the connection is dead [NWP-5.2-3]. */
        if (now - s->last_rx >= 2 * s->heartbeat_ms ||
            (s->state == NATTER_S_DRAINING && now >= s->deadline_at)) {
            close_with(s, NATTER_IDLE_TIMEOUT, false, now);
            return;
        }
        process(s, now); /* frames held back while tx was full */
        pump(s, now);
        if (connected(s) && now - s->last_tx >= s->heartbeat_ms && tx_room(s) >= CONTROL_ROOM) {
            f.type = NATTER_PING; /* nothing sent for heartbeat_ms [NWP-5.2-1] */
            f.as.ping.nonce = s->next_nonce++;
            queue(s, &f, now);
        }
        return;
    default:
        return;
    }
}

static uint64_t min64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

uint64_t natter_session_deadline(const natter_session *s)
{
    uint64_t t;
    switch (s->state) {
    case NATTER_S_WAITING:
    case NATTER_S_HELLO: return s->deadline_at;
    case NATTER_S_READY:
    case NATTER_S_LIVE:
    case NATTER_S_DRAINING:
        t = min64(s->last_rx + 2 * s->heartbeat_ms, s->last_tx + s->heartbeat_ms);
        if (s->acked < s->cursor) t = min64(t, s->ack_due);
        if (s->state == NATTER_S_DRAINING) t = min64(t, s->deadline_at);
        return min64(t, s->retry_at);
    case NATTER_S_STOPPED: return FOREVER;
    default: return 0; /* CONNECTING, CLOSING: the driver acts now */
    }
}

int natter_session_send(natter_session *s, natter_bytes conv, uint64_t client_msg_id,
                        natter_bytes content_type, natter_bytes body)
{
    natter_frame f;
    size_t before = s->outbox_len;
    int r;
    if (client_msg_id == 0) return NATTER_E_INVALID; /* [NWP-6.2.1-1] */
    f.type = NATTER_SEND;
    f.as.send.request = s->next_request;
    f.as.send.conversation = conv;
    f.as.send.client_msg_id = client_msg_id;
    f.as.send.kind = 0; /* MESSAGE */
    f.as.send.target = 0;
    f.as.send.content_type = content_type;
    f.as.send.body = body;
    r = natter_outbox_add(s, &f);
    if (r != NATTER_OK) return r;
    if (s->outbox_len - before - sizeof(natter_entry) > s->cfg.tx_cap) {
        s->outbox_len = before; /* it could never pass through tx */
        return NATTER_E_NO_SPACE;
    }
    /* It goes out at the next tick, so that callbacks may call this; the deadline says now. */
    s->next_request++;
    s->retry_at = 0;
    return NATTER_OK;
}

size_t natter_session_pending(const natter_session *s)
{
    natter_entry e;
    size_t off, n = 0;
    for (off = 0; natter_outbox_get(s, off, &e); off = natter_outbox_next(off, &e)) n++;
    return n;
}

void natter_session_set_token(natter_session *s, natter_bytes token, uint64_t now_ms)
{
    s->cfg.token = token;
    if (s->state != NATTER_S_STOPPED) return;
    s->fatal = false;
    s->backoff_ms = s->cfg.backoff_min_ms;
    s->deadline_at = now_ms;
    set_state(s, NATTER_S_CONNECTING, 0);
}
