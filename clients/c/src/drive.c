/* Runs a session over a natter_transport: the only place where core meets I/O callbacks. */
#include "natter.h"

static void drop(natter_session *s, const natter_transport *t, uint64_t now)
{
    t->close(t->ctx);
    natter_session_closed(s, now);
}

void natter_drive(natter_session *s, const natter_transport *t, uint64_t now_ms)
{
    natter_session_tick(s, now_ms);
    if (s->state == NATTER_S_CONNECTING) {
        if (t->open(t->ctx) == 0) natter_session_opened(s, now_ms);
        else natter_session_closed(s, now_ms);
    }
    for (;;) { /* read while bytes are there and the session has room for them */
        uint8_t *buf;
        size_t room = natter_session_rx_space(s, &buf);
        long n = room ? t->read(t->ctx, buf, room) : 0;
        if (n == 0) break;
        if (n < 0) {
            drop(s, t, now_ms);
            return;
        }
        natter_session_rx_done(s, (size_t)n, now_ms);
    }
    while (s->state >= NATTER_S_HELLO && s->state <= NATTER_S_CLOSING) {
        const uint8_t *buf;
        size_t len = natter_session_tx_pending(s, &buf);
        long n = len ? t->write(t->ctx, buf, len) : 0;
        if (n < 0 && s->state != NATTER_S_CLOSING) {
            drop(s, t, now_ms);
            return;
        }
        if (n <= 0) break;
        natter_session_tx_done(s, (size_t)n);
    }
    if (s->state == NATTER_S_CLOSING) drop(s, t, now_ms);
}
