/*
 * libFuzzer target: a live session fed arbitrary server bytes, in pieces and with time
 * passing. Whatever it receives, every byte it writes must be a valid frame.
 */
#include <stdlib.h>
#include <string.h>

#include "natter.h"

static const uint8_t ready[] = {0x17, 0x02, 0x01, 0x00, 0x80, 0x01, 0x00, 0x00, 0x43, 0xe8,
                                0x01, 0x05, 0x61, 0x6c, 0x69, 0x63, 0x65, 0x02, 0x63, 0x31,
                                0x00, 0x00, 0x00, 0x00};

static void drain(natter_session *s)
{
    const uint8_t *p;
    size_t len = natter_session_tx_pending(s, &p), pos = 0, n;
    natter_frame f;
    while (pos < len) {
        if (natter_frame_split(p + pos, len - pos, 65536, &n) != NATTER_OK ||
            natter_frame_decode(p + pos, n, &f) != NATTER_OK)
            abort();
        pos += n;
    }
    natter_session_tx_done(s, len);
}

static void feed(natter_session *s, const uint8_t *data, size_t len, uint64_t now)
{
    uint8_t *room;
    size_t n = natter_session_rx_space(s, &room);
    if (n > len) n = len;
    memcpy(room, data, n);
    natter_session_rx_done(s, n, now);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t rx[4100], tx[256], outbox[512];
    natter_session s;
    natter_config c;
    uint64_t now = 1000;
    size_t pos = 0;
    memset(&c, 0, sizeof c);
    c.token = (natter_bytes){(const uint8_t *)"t", 1};
    c.cursor = 3;
    c.rx_buf = rx, c.rx_cap = sizeof rx;
    c.tx_buf = tx, c.tx_cap = sizeof tx;
    c.outbox_buf = outbox, c.outbox_cap = sizeof outbox;
    if (natter_session_init(&s, &c, now) != NATTER_OK) abort();
    natter_session_opened(&s, now);
    drain(&s);
    feed(&s, ready, sizeof ready, now);
    natter_session_send(&s, (natter_bytes){(const uint8_t *)"d/a/b", 5}, 1,
                        (natter_bytes){NULL, 0}, (natter_bytes){(const uint8_t *)"x", 1});
    natter_session_tick(&s, now);
    drain(&s);
    /* Each step: one byte says how much to feed and how much time passes. */
    while (pos < size) {
        size_t step = (size_t)(data[pos] & 0x1f) + 1;
        now += (uint64_t)(data[pos] >> 5) * 300;
        pos++;
        if (step > size - pos) step = size - pos;
        natter_session_tick(&s, now);
        feed(&s, data + pos, step, now);
        drain(&s);
        if (s.state == NATTER_S_CLOSING) natter_session_closed(&s, now);
        if (s.state == NATTER_S_CONNECTING) {
            natter_session_opened(&s, now);
            drain(&s);
        }
        pos += step;
    }
    return 0;
}
