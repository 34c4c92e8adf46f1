/* The outbox: SENDs waiting for their answer, in the caller's memory. Internal to natter-c. */
#ifndef NATTER_OUTBOX_H
#define NATTER_OUTBOX_H

#include "natter.h"

/*
 * An entry's header; the encoded SEND frame follows it. Entries lie back to back in
 * outbox_buf in the order they were queued, which is the order they are (re)sent in.
 * Headers are copied in and out with memcpy, so the buffer needs no alignment.
 */
typedef struct natter_entry {
    uint64_t request, client_msg_id;
    uint64_t retry_at; /* not before this time (RATE_LIMITED, UNAVAILABLE) */
    uint32_t len;      /* bytes of the frame */
    uint8_t sent;      /* written on the current connection */
} natter_entry;

/* Encodes send after the last entry; NATTER_E_NO_SPACE when it does not fit. */
int natter_outbox_add(natter_session *s, const natter_frame *send);
/* Reads the entry at off into *e; false past the last entry. */
bool natter_outbox_get(const natter_session *s, size_t off, natter_entry *e);
/* Writes back an entry's header. */
void natter_outbox_set(natter_session *s, size_t off, const natter_entry *e);
/* The offset of the entry after the one at off. */
size_t natter_outbox_next(size_t off, const natter_entry *e);
/* The encoded frame of the entry at off. */
const uint8_t *natter_outbox_frame(const natter_session *s, size_t off);
/* Finds the entry of a request. */
bool natter_outbox_find(const natter_session *s, uint64_t request, size_t *off, natter_entry *e);
/* Removes the entry at off; the later ones move down. */
void natter_outbox_remove(natter_session *s, size_t off, const natter_entry *e);

#endif
