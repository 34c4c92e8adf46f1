/* The data types of spec 2.2 over byte buffers: internal to natter-c. */
#ifndef NATTER_WIRE_H
#define NATTER_WIRE_H

#include "natter.h"

/*
 * A reader over [p, end). The first error sticks in err; every later read returns 0 and
 * consumes nothing, so a decoder reads all its fields and checks err once at the end.
 */
typedef struct natter_reader {
    const uint8_t *p, *end;
    int err;
} natter_reader;

/*
 * A writer into out[0..cap). len counts every byte written, also past cap: writing with
 * cap 0 measures a frame. err is set by the first value that cannot be encoded.
 */
typedef struct natter_writer {
    uint8_t *out;
    size_t cap, len;
    int err;
} natter_writer;

/* The size of the shortest encoding of v (8 for values above the varint range). */
size_t natter_varint_len(uint64_t v);
/* Whether s holds valid UTF-8 (RFC 3629). */
bool natter_utf8_valid(const uint8_t *s, size_t len);

uint64_t natter_rd_varint(natter_reader *r);
uint8_t natter_rd_byte(natter_reader *r);
bool natter_rd_flag(natter_reader *r);
natter_bytes natter_rd_bytes(natter_reader *r);
natter_bytes natter_rd_str(natter_reader *r);

void natter_wr_varint(natter_writer *w, uint64_t v);
void natter_wr_byte(natter_writer *w, uint8_t b);
void natter_wr_raw(natter_writer *w, natter_bytes b);
void natter_wr_bytes(natter_writer *w, natter_bytes b);
void natter_wr_str(natter_writer *w, natter_bytes s);

#endif
