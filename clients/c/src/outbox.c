/* The outbox keeps each SEND encoded, so a retry is byte for byte the same [NWP-6.2.1-1]. */
#include <string.h>

#include "outbox.h"

int natter_outbox_add(natter_session *s, const natter_frame *send)
{
    natter_entry e = {0, 0, 0, 0, 0};
    size_t off = s->outbox_len, len;
    int r;
    if (s->cfg.outbox_cap < off + sizeof e) return NATTER_E_NO_SPACE;
    r = natter_frame_encode(send, s->cfg.outbox_buf + off + sizeof e,
                            s->cfg.outbox_cap - off - sizeof e, &len);
    if (r != NATTER_OK) return r;
    e.request = send->as.send.request;
    e.client_msg_id = send->as.send.client_msg_id;
    e.len = (uint32_t)len;
    natter_outbox_set(s, off, &e);
    s->outbox_len = off + sizeof e + len;
    return NATTER_OK;
}

bool natter_outbox_get(const natter_session *s, size_t off, natter_entry *e)
{
    if (off >= s->outbox_len) return false;
    memcpy(e, s->cfg.outbox_buf + off, sizeof *e);
    return true;
}

void natter_outbox_set(natter_session *s, size_t off, const natter_entry *e)
{
    memcpy(s->cfg.outbox_buf + off, e, sizeof *e);
}

size_t natter_outbox_next(size_t off, const natter_entry *e)
{
    return off + sizeof *e + e->len;
}

const uint8_t *natter_outbox_frame(const natter_session *s, size_t off)
{
    return s->cfg.outbox_buf + off + sizeof(natter_entry);
}

bool natter_outbox_find(const natter_session *s, uint64_t request, size_t *off, natter_entry *e)
{
    for (*off = 0; natter_outbox_get(s, *off, e); *off = natter_outbox_next(*off, e))
        if (e->request == request) return true;
    return false;
}

void natter_outbox_remove(natter_session *s, size_t off, const natter_entry *e)
{
    size_t next = natter_outbox_next(off, e);
    memmove(s->cfg.outbox_buf + off, s->cfg.outbox_buf + next, s->outbox_len - next);
    s->outbox_len -= next - off;
}
