/*
 * libFuzzer target: the decoder on arbitrary bytes. Beyond "no crash" it checks that the
 * typed decoders and the layout table agree on every frame, and that whatever decodes
 * re-encodes to a frame that decodes to the same value.
 */
#include <stdlib.h>
#include <string.h>

#include "frame_json.h"
#include "natter.h"
#include "../src/wire.h"

#define REQUIRE(cond) \
    do {              \
        if (!(cond)) abort(); \
    } while (0)

static void one_frame(const uint8_t *frame, size_t len)
{
    static char a[1 << 16], b[1 << 16];
    static uint8_t out[1 << 16];
    natter_reader r = {frame, frame + len, 0};
    natter_frame f, g;
    size_t out_len;
    uint64_t type;
    int typed = natter_frame_decode(frame, len, &f), walked;

    /* The layout walk of the same payload reaches the same verdict. */
    natter_rd_varint(&r);
    type = natter_rd_varint(&r);
    if (r.err) {
        REQUIRE(typed == r.err);
        return;
    }
    walked = natter_layout_check(type, r.p, (size_t)(r.end - r.p), NULL, NULL);
    REQUIRE(typed == walked);
    if (typed != NATTER_OK) return;

    REQUIRE(json_layout(frame, len, a, sizeof a) == NATTER_OK);
    REQUIRE(natter_frame_encode(&f, out, sizeof out, &out_len) == NATTER_OK);
    REQUIRE(out_len <= len); /* only extension bytes can be dropped */
    REQUIRE(natter_frame_decode(out, out_len, &g) == NATTER_OK);
    REQUIRE(json_layout(out, out_len, b, sizeof b) == NATTER_OK);
    REQUIRE(strcmp(a, b) == 0);
    if (json_typed(&f, a, sizeof a)) {
        REQUIRE(json_typed(&g, b, sizeof b));
        REQUIRE(strcmp(a, b) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t pos = 0, len;
    /* As a stream, with a limit the first byte picks: 4096 to 64 KiB. */
    uint64_t max = size ? 4096u << (data[0] % 5) : 4096u;
    while (pos < size) {
        int r = natter_frame_split(data + pos, size - pos, max, &len);
        if (r != NATTER_OK) {
            REQUIRE(r == NATTER_INCOMPLETE || r < 0);
            break;
        }
        REQUIRE(len >= 2 && len <= size - pos && len <= max + 4);
        one_frame(data + pos, len);
        pos += len;
    }
    /* As a nested frame: exactly one, whatever follows. */
    if (size) {
        natter_frame f;
        (void)natter_frame_decode(data, size, &f);
    }
    return 0;
}
