/* Frames as the JSON of spec/vectors/README.md, for the tests and the fuzzer. */
#ifndef FRAME_JSON_H
#define FRAME_JSON_H

#include <stddef.h>

#include "natter.h"

/* Writes a typed frame's JSON from its struct; 0 when natter-c does not type f->type. */
int json_typed(const natter_frame *f, char *out, size_t cap);

/* Writes any complete frame's JSON by walking its layout (natter_layout_check); unknown
 * types give {"type": "UNKNOWN", ...}. Returns the decode result. */
int json_layout(const uint8_t *frame, size_t len, char *out, size_t cap);

/* Removes the white space outside strings, so that two JSON texts compare with strcmp. */
void json_squeeze(char *s);

#endif
