/* Varints, flags, strings and byte strings (spec 2.2), read and written with sticky errors. */
#include <string.h>

#include "wire.h"

size_t natter_varint_len(uint64_t v)
{
    return v < 0x40 ? 1 : v < 0x4000 ? 2 : v < 0x40000000 ? 4 : 8;
}

bool natter_utf8_valid(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        size_t n;
        uint8_t lo = 0x80, hi = 0xbf; /* the range of the second byte */
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            n = 2;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 3;
            if (c == 0xe0) lo = 0xa0; /* overlong */
            if (c == 0xed) hi = 0x9f; /* UTF-16 surrogates */
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 4;
            if (c == 0xf0) lo = 0x90; /* overlong */
            if (c == 0xf4) hi = 0x8f; /* above U+10FFFF */
        } else {
            return false; /* a continuation byte, an overlong 0xc0/0xc1 lead, or 0xf5.. */
        }
        if (len - i < n || s[i + 1] < lo || s[i + 1] > hi) return false;
        for (size_t k = 2; k < n; k++)
            if ((s[i + k] & 0xc0) != 0x80) return false;
        i += n;
    }
    return true;
}

static void fail(natter_reader *r, int err)
{
    if (!r->err) r->err = err;
}

uint64_t natter_rd_varint(natter_reader *r)
{
    size_t avail = (size_t)(r->end - r->p), n;
    uint64_t v;
    if (r->err) return 0;
    if (avail == 0) {
        fail(r, NATTER_E_TRUNCATED);
        return 0;
    }
    n = (size_t)1 << (r->p[0] >> 6);
    if (n > avail) {
        fail(r, NATTER_E_TRUNCATED);
        return 0;
    }
    v = r->p[0] & 0x3f;
    for (size_t i = 1; i < n; i++) v = v << 8 | r->p[i];
    /* Every value has exactly one encoding [NWP-2.2-2]. */
    if (natter_varint_len(v) != n) {
        fail(r, NATTER_E_NON_MINIMAL_VARINT);
        return 0;
    }
    r->p += n;
    return v;
}

uint8_t natter_rd_byte(natter_reader *r)
{
    if (r->err) return 0;
    if (r->p == r->end) {
        fail(r, NATTER_E_TRUNCATED); /* [NWP-3-5] */
        return 0;
    }
    return *r->p++;
}

bool natter_rd_flag(natter_reader *r)
{
    uint8_t b = natter_rd_byte(r);
    if (b > 1) fail(r, NATTER_E_INVALID_FLAG); /* [NWP-2.2-4] */
    return b == 1;
}

natter_bytes natter_rd_bytes(natter_reader *r)
{
    natter_bytes b = {NULL, 0};
    uint64_t len = natter_rd_varint(r);
    if (r->err) return b;
    if (len > (uint64_t)(r->end - r->p)) { /* [NWP-2.2-5] */
        fail(r, NATTER_E_TRUNCATED);
        return b;
    }
    b.ptr = r->p;
    b.len = (size_t)len;
    r->p += b.len;
    return b;
}

natter_bytes natter_rd_str(natter_reader *r)
{
    natter_bytes s = natter_rd_bytes(r);
    /* [NWP-2.2-3] */
    if (!r->err && !natter_utf8_valid(s.ptr, s.len)) fail(r, NATTER_E_INVALID_UTF8);
    return s;
}

static void put(natter_writer *w, const uint8_t *src, size_t n)
{
    if (w->len <= w->cap && n <= w->cap - w->len && n) memcpy(w->out + w->len, src, n);
    w->len += n;
}

void natter_wr_varint(natter_writer *w, uint64_t v)
{
    uint8_t b[8];
    size_t n = natter_varint_len(v);
    if (v > NATTER_VARINT_MAX) {
        if (!w->err) w->err = NATTER_E_INVALID;
        return;
    }
    for (size_t i = n; i-- > 0; v >>= 8) b[i] = (uint8_t)v;
    /* The top two bits of the first byte give the length: 00, 01, 10, 11 for 1, 2, 4, 8. */
    b[0] |= (uint8_t)((n == 1 ? 0 : n == 2 ? 1 : n == 4 ? 2 : 3) << 6);
    put(w, b, n);
}

void natter_wr_byte(natter_writer *w, uint8_t b)
{
    put(w, &b, 1);
}

void natter_wr_raw(natter_writer *w, natter_bytes b)
{
    put(w, b.ptr, b.len);
}

void natter_wr_bytes(natter_writer *w, natter_bytes b)
{
    natter_wr_varint(w, b.len);
    natter_wr_raw(w, b);
}

void natter_wr_str(natter_writer *w, natter_bytes s)
{
    /* The peer would close the connection on it, so refuse it here [NWP-2.2-3]. */
    if (!natter_utf8_valid(s.ptr, s.len) && !w->err) w->err = NATTER_E_INVALID_UTF8;
    natter_wr_bytes(w, s);
}
