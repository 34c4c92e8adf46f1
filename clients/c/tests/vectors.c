/*
 * Runs every vector of spec/vectors (format: spec/vectors/README.md) against the codec.
 *
 * usage: vectors [--corpus DIR] FILE...   (--corpus also writes each input there, as seeds)
 *
 * Modes: stream (the stream decoder), nested (exactly one frame), message (one WebSocket
 * message: exactly one frame, else not_one_frame; natter-c speaks TCP, so the harness
 * applies that rule on top of the stream decoder as the README describes).
 *
 * For each vector: the decode result is the expected one (frame, incomplete or the named
 * error); a frame's JSON, both from its typed struct (for the frames natter-c types) and from
 * its layout walk, equals `decoded`; the stream consumes all but `trailing` bytes; every
 * shorter prefix is incomplete (or the same error); and encoding the decoded frame gives
 * the input back (roundtrip: yes), or a shorter frame that decodes the same (roundtrip: no).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame_json.h"
#include "natter.h"

#define MAX_BYTES 4096
#define MAX_JSON 8192

typedef struct vector {
    char name[128];
    char mode[16]; /* stream, nested or message */
    uint64_t max_frame_size;
    int roundtrip;
    uint8_t bytes[MAX_BYTES];
    size_t len, trailing;
    char expect[64];
    char decoded[MAX_JSON];
} vector;

static int passed, failed, typed_checked;

static int fail(const vector *v, const char *what, const char *got, const char *want)
{
    printf("FAIL %s: %s\n  got:  %s\n  want: %s\n", v->name, what, got, want);
    return 0;
}

#define NOT_ONE_FRAME 100 /* a WebSocket message that is not exactly one frame [NWP-5.6-2] */

/* Decodes the input as the vector's mode says; *used is how many bytes the frame took. */
static int decode(const vector *v, size_t len, natter_frame *f, size_t *used)
{
    int r;
    if (strcmp(v->mode, "nested") == 0) {
        *used = len;
        return natter_frame_decode(v->bytes, len, f);
    }
    r = natter_frame_split(v->bytes, len, v->max_frame_size, used);
    if (strcmp(v->mode, "message") == 0 &&
        (r == NATTER_INCOMPLETE || (r == NATTER_OK && *used != len)))
        return NOT_ONE_FRAME;
    return r == NATTER_OK ? natter_frame_decode(v->bytes, *used, f) : r;
}

static int check(const vector *v)
{
    static char json[MAX_JSON], want[MAX_JSON];
    natter_frame f, again;
    uint8_t out[MAX_BYTES];
    size_t used = 0, out_len = 0;
    int r = decode(v, v->len, &f, &used);
    const char *got = r == NATTER_OK        ? "frame"
                      : r == NOT_ONE_FRAME ? "not_one_frame"
                                           : natter_result_name(r);

    if (strcmp(got, v->expect) != 0) return fail(v, "result", got, v->expect);

    /* Fed in pieces, the decoder waits for more until the frame is whole [NWP-3-8]. */
    if (strcmp(v->mode, "stream") == 0) {
        size_t end = r == NATTER_OK ? used : v->len;
        for (size_t n = 0; n < end; n++) {
            size_t u;
            natter_frame p;
            int rp = decode(v, n, &p, &u);
            if (rp != NATTER_INCOMPLETE && !(r < 0 && rp == r)) {
                char at[64];
                snprintf(at, sizeof at, "prefix of %zu bytes", n);
                return fail(v, at, natter_result_name(rp), "incomplete");
            }
        }
    }
    if (r != NATTER_OK) return 1;

    if (used != v->len - v->trailing) {
        char a[32], b[32];
        snprintf(a, sizeof a, "%zu", used), snprintf(b, sizeof b, "%zu", v->len - v->trailing);
        return fail(v, "bytes consumed", a, b);
    }
    strcpy(want, v->decoded);
    json_squeeze(want);
    if (json_layout(v->bytes, used, json, sizeof json) != NATTER_OK)
        return fail(v, "layout walk", "error", "frame");
    json_squeeze(json);
    if (strcmp(json, want) != 0) return fail(v, "layout JSON", json, want);
    if (json_typed(&f, json, sizeof json)) {
        json_squeeze(json);
        if (strcmp(json, want) != 0) return fail(v, "typed JSON", json, want);
        typed_checked++;
    }

    r = natter_frame_encode(&f, out, sizeof out, &out_len);
    if (r != NATTER_OK) return fail(v, "encode", natter_result_name(r), "ok");
    if (v->roundtrip) {
        if (out_len != used || memcmp(out, v->bytes, used) != 0)
            return fail(v, "re-encoded bytes", "differ", "the input");
    } else {
        /* Extension bytes are dropped; what is left decodes to the same frame. */
        if (out_len >= used) return fail(v, "re-encoded length", "not shorter", "shorter");
        if (json_layout(out, out_len, json, sizeof json) != NATTER_OK ||
            natter_frame_decode(out, out_len, &again) != NATTER_OK)
            return fail(v, "re-decode", "error", "frame");
        json_squeeze(json);
        if (strcmp(json, want) != 0) return fail(v, "re-decoded JSON", json, want);
    }
    return 1;
}

static void finish(vector *v, const char *corpus)
{
    if (!v->name[0]) return;
    if (check(v)) passed++;
    else failed++;
    if (corpus) {
        char path[512];
        FILE *out;
        snprintf(path, sizeof path, "%s/%s", corpus, v->name);
        out = fopen(path, "wb");
        if (out) {
            fwrite(v->bytes, 1, v->len, out);
            fclose(out);
        }
    }
}

static void start(vector *v, const char *name)
{
    memset(v, 0, sizeof *v);
    snprintf(v->name, sizeof v->name, "%.127s", name);
    v->max_frame_size = NATTER_DEFAULT_MAX_FRAME_SIZE;
    v->roundtrip = 1;
    strcpy(v->mode, "stream");
}

/* Appends the hex bytes of one input line; everything from '#' on is a comment. */
static void add_hex(vector *v, const char *line)
{
    unsigned byte;
    int n;
    while (*line && *line != '#') {
        if (*line == ' ' || *line == '\t' || *line == '\n' || *line == '\r') {
            line++;
        } else if (sscanf(line, "%2x%n", &byte, &n) == 1 && n == 2 && v->len < MAX_BYTES) {
            v->bytes[v->len++] = (uint8_t)byte;
            line += 2;
        } else {
            printf("bad hex in %s: %s", v->name, line);
            failed++;
            return;
        }
    }
}

static void run_file(const char *path, const char *corpus)
{
    static vector v;
    static char line[MAX_JSON + 64];
    FILE *in = fopen(path, "r");
    int in_bytes = 0;
    if (!in) {
        printf("cannot open %s\n", path);
        failed++;
        return;
    }
    v.name[0] = '\0';
    while (fgets(line, sizeof line, in)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (strncmp(line, "=== ", 4) == 0) {
            finish(&v, corpus);
            start(&v, line + 4);
            in_bytes = 0;
        } else if (!v.name[0] || line[0] == '#' || line[0] == '\0') {
            continue;
        } else if (line[0] == ' ') {
            if (in_bytes) add_hex(&v, line);
        } else {
            char *value = strstr(line, ": ");
            in_bytes = strcmp(line, "bytes:") == 0;
            if (in_bytes) continue;
            if (!value) {
                printf("bad line in %s: %s\n", v.name, line);
                failed++;
                continue;
            }
            *value = '\0', value += 2;
            if (strcmp(line, "mode") == 0)
                snprintf(v.mode, sizeof v.mode, "%.15s", value);
            else if (strcmp(line, "max_frame_size") == 0)
                v.max_frame_size = strtoull(value, 0, 10);
            else if (strcmp(line, "roundtrip") == 0)
                v.roundtrip = strcmp(value, "yes") == 0;
            else if (strcmp(line, "trailing") == 0)
                v.trailing = strtoul(value, 0, 10);
            else if (strcmp(line, "expect") == 0)
                snprintf(v.expect, sizeof v.expect, "%.63s", value);
            else if (strcmp(line, "decoded") == 0)
                snprintf(v.decoded, sizeof v.decoded, "%.8191s", value);
        }
    }
    finish(&v, corpus);
    fclose(in);
}

int main(int argc, char **argv)
{
    const char *corpus = NULL;
    int i = 1;
    if (argc > 2 && strcmp(argv[1], "--corpus") == 0) corpus = argv[2], i = 3;
    for (; i < argc; i++) run_file(argv[i], corpus);
    printf("vectors: %d compared field by field through the typed structs\n", typed_checked);
    printf("%d passed, %d failed\n", passed, failed);
    return failed || passed == 0;
}
