/* Framing (spec 3) and the typed frames of the minimal profile (spec 6.1, 6.2, 12). */
#include "wire.h"

const char *natter_result_name(int result)
{
    switch (result) {
    case NATTER_OK: return "ok";
    case NATTER_INCOMPLETE: return "incomplete";
    case NATTER_E_FRAME_TOO_LARGE: return "frame_too_large";
    case NATTER_E_EMPTY_FRAME: return "empty_frame";
    case NATTER_E_TRUNCATED: return "truncated";
    case NATTER_E_NON_MINIMAL_VARINT: return "non_minimal_varint";
    case NATTER_E_INVALID_UTF8: return "invalid_utf8";
    case NATTER_E_INVALID_FLAG: return "invalid_flag";
    case NATTER_E_TRAILING_DATA: return "trailing_data";
    case NATTER_E_NO_SPACE: return "no_space";
    case NATTER_E_INVALID: return "invalid";
    default: return "unknown";
    }
}

int natter_frame_split(const uint8_t *buf, size_t len, uint64_t max_frame_size,
                       size_t *frame_len)
{
    natter_reader r = {buf, buf + len, 0};
    uint64_t length = natter_rd_varint(&r);
    size_t prefix = (size_t)(r.p - buf);
    if (r.err == NATTER_E_TRUNCATED) return NATTER_INCOMPLETE; /* the Length is cut */
    if (r.err) return r.err;
    if (max_frame_size > NATTER_MAX_FRAME_SIZE_CAP) max_frame_size = NATTER_MAX_FRAME_SIZE_CAP;
    /* Judged from the Length alone, before buffering the body [NWP-3-3] [NWP-3-4]. */
    if (length > max_frame_size) return NATTER_E_FRAME_TOO_LARGE;
    if (length == 0) return NATTER_E_EMPTY_FRAME; /* [NWP-3-2] */
    if (length > len - prefix) return NATTER_INCOMPLETE; /* [NWP-3-8] */
    *frame_len = prefix + (size_t)length;
    return NATTER_OK;
}

static void rd_event(natter_reader *r, natter_event *e)
{
    e->seq = natter_rd_varint(r);
    e->kind = natter_rd_varint(r);
    e->target = natter_rd_varint(r);
    e->flags = natter_rd_byte(r); /* a bit set, not a flag: any value is valid */
    e->timestamp = natter_rd_varint(r);
    e->sender = natter_rd_str(r);
    e->device = natter_rd_str(r);
    e->client_msg_id = natter_rd_varint(r);
    e->content_type = natter_rd_str(r);
    e->body = natter_rd_bytes(r);
}

/* Reads the fields of a typed frame; false for the types this file does not type. */
static bool rd_typed(natter_reader *r, natter_frame *f)
{
    switch (f->type) {
    case NATTER_HELLO:
        f->as.hello.min_version = natter_rd_varint(r);
        f->as.hello.max_version = natter_rd_varint(r);
        f->as.hello.features = natter_rd_varint(r);
        f->as.hello.max_frame_size = natter_rd_varint(r);
        f->as.hello.token = natter_rd_bytes(r);
        f->as.hello.agent = natter_rd_str(r);
        return true;
    case NATTER_READY:
        f->as.ready.version = natter_rd_varint(r);
        f->as.ready.features = natter_rd_varint(r);
        f->as.ready.max_frame_size = natter_rd_varint(r);
        f->as.ready.heartbeat_ms = natter_rd_varint(r);
        f->as.ready.session = natter_rd_varint(r);
        f->as.ready.user = natter_rd_str(r);
        f->as.ready.device = natter_rd_str(r);
        f->as.ready.inbox_head = natter_rd_varint(r);
        f->as.ready.server_time = natter_rd_varint(r);
        return true;
    case NATTER_PING:
    case NATTER_PONG:
        f->as.ping.nonce = natter_rd_varint(r);
        return true;
    case NATTER_GOAWAY:
        f->as.goaway.code = natter_rd_varint(r);
        f->as.goaway.reconnect_ms = natter_rd_varint(r);
        f->as.goaway.message = natter_rd_str(r);
        return true;
    case NATTER_ERROR:
        f->as.error.request = natter_rd_varint(r);
        f->as.error.code = natter_rd_varint(r);
        f->as.error.retry_after_ms = natter_rd_varint(r);
        f->as.error.message = natter_rd_str(r);
        return true;
    case NATTER_SEND:
        f->as.send.request = natter_rd_varint(r);
        f->as.send.conversation = natter_rd_str(r);
        f->as.send.client_msg_id = natter_rd_varint(r);
        f->as.send.kind = natter_rd_varint(r);
        f->as.send.target = natter_rd_varint(r);
        f->as.send.content_type = natter_rd_str(r);
        f->as.send.body = natter_rd_bytes(r);
        return true;
    case NATTER_SEND_ACK:
        f->as.send_ack.request = natter_rd_varint(r);
        f->as.send_ack.seq = natter_rd_varint(r);
        f->as.send_ack.timestamp = natter_rd_varint(r);
        f->as.send_ack.duplicate = natter_rd_flag(r);
        return true;
    case NATTER_DELIVER:
        f->as.deliver.inbox_seq = natter_rd_varint(r);
        f->as.deliver.conversation = natter_rd_str(r);
        rd_event(r, &f->as.deliver.event);
        return true;
    case NATTER_ACK:
        f->as.ack.inbox_seq = natter_rd_varint(r);
        return true;
    case NATTER_RESUME:
        f->as.resume.request = natter_rd_varint(r);
        f->as.resume.after = natter_rd_varint(r);
        return true;
    case NATTER_SYNCED:
        f->as.synced.request = natter_rd_varint(r);
        f->as.synced.inbox_head = natter_rd_varint(r);
        return true;
    case NATTER_GAP:
        f->as.gap.conversation = natter_rd_str(r);
        f->as.gap.from = natter_rd_varint(r);
        f->as.gap.to = natter_rd_varint(r);
        return true;
    default:
        return false;
    }
}

int natter_frame_decode(const uint8_t *frame, size_t len, natter_frame *out)
{
    natter_reader r = {frame, frame + len, 0};
    uint64_t length = natter_rd_varint(&r);
    if (r.err) return r.err;
    if (length == 0) return NATTER_E_EMPTY_FRAME;
    /* A frame held by a field must fill it exactly [NWP-9.3-2]. */
    if (length > (uint64_t)(r.end - r.p)) return NATTER_E_TRUNCATED;
    if (length < (uint64_t)(r.end - r.p)) return NATTER_E_TRAILING_DATA;
    out->type = natter_rd_varint(&r);
    if (r.err) return r.err;
    if (rd_typed(&r, out)) return r.err; /* bytes after the known fields are ignored */
    out->as.payload.ptr = r.p;
    out->as.payload.len = (size_t)(r.end - r.p);
    return natter_layout_check(out->type, r.p, out->as.payload.len, NULL, NULL);
}

static void wr_event(natter_writer *w, const natter_event *e)
{
    natter_wr_varint(w, e->seq);
    natter_wr_varint(w, e->kind);
    natter_wr_varint(w, e->target);
    natter_wr_byte(w, e->flags);
    natter_wr_varint(w, e->timestamp);
    natter_wr_str(w, e->sender);
    natter_wr_str(w, e->device);
    natter_wr_varint(w, e->client_msg_id);
    natter_wr_str(w, e->content_type);
    natter_wr_bytes(w, e->body);
}

static void wr_payload(natter_writer *w, const natter_frame *f)
{
    switch (f->type) {
    case NATTER_HELLO:
        natter_wr_varint(w, f->as.hello.min_version);
        natter_wr_varint(w, f->as.hello.max_version);
        natter_wr_varint(w, f->as.hello.features);
        natter_wr_varint(w, f->as.hello.max_frame_size);
        natter_wr_bytes(w, f->as.hello.token);
        natter_wr_str(w, f->as.hello.agent);
        break;
    case NATTER_READY:
        natter_wr_varint(w, f->as.ready.version);
        natter_wr_varint(w, f->as.ready.features);
        natter_wr_varint(w, f->as.ready.max_frame_size);
        natter_wr_varint(w, f->as.ready.heartbeat_ms);
        natter_wr_varint(w, f->as.ready.session);
        natter_wr_str(w, f->as.ready.user);
        natter_wr_str(w, f->as.ready.device);
        natter_wr_varint(w, f->as.ready.inbox_head);
        natter_wr_varint(w, f->as.ready.server_time);
        break;
    case NATTER_PING:
    case NATTER_PONG:
        natter_wr_varint(w, f->as.ping.nonce);
        break;
    case NATTER_GOAWAY:
        natter_wr_varint(w, f->as.goaway.code);
        natter_wr_varint(w, f->as.goaway.reconnect_ms);
        natter_wr_str(w, f->as.goaway.message);
        break;
    case NATTER_ERROR:
        natter_wr_varint(w, f->as.error.request);
        natter_wr_varint(w, f->as.error.code);
        natter_wr_varint(w, f->as.error.retry_after_ms);
        natter_wr_str(w, f->as.error.message);
        break;
    case NATTER_SEND:
        natter_wr_varint(w, f->as.send.request);
        natter_wr_str(w, f->as.send.conversation);
        natter_wr_varint(w, f->as.send.client_msg_id);
        natter_wr_varint(w, f->as.send.kind);
        natter_wr_varint(w, f->as.send.target);
        natter_wr_str(w, f->as.send.content_type);
        natter_wr_bytes(w, f->as.send.body);
        break;
    case NATTER_SEND_ACK:
        natter_wr_varint(w, f->as.send_ack.request);
        natter_wr_varint(w, f->as.send_ack.seq);
        natter_wr_varint(w, f->as.send_ack.timestamp);
        natter_wr_byte(w, f->as.send_ack.duplicate ? 1 : 0);
        break;
    case NATTER_DELIVER:
        natter_wr_varint(w, f->as.deliver.inbox_seq);
        natter_wr_str(w, f->as.deliver.conversation);
        wr_event(w, &f->as.deliver.event);
        break;
    case NATTER_ACK:
        natter_wr_varint(w, f->as.ack.inbox_seq);
        break;
    case NATTER_RESUME:
        natter_wr_varint(w, f->as.resume.request);
        natter_wr_varint(w, f->as.resume.after);
        break;
    case NATTER_SYNCED:
        natter_wr_varint(w, f->as.synced.request);
        natter_wr_varint(w, f->as.synced.inbox_head);
        break;
    case NATTER_GAP:
        natter_wr_str(w, f->as.gap.conversation);
        natter_wr_varint(w, f->as.gap.from);
        natter_wr_varint(w, f->as.gap.to);
        break;
    default:
        natter_wr_raw(w, f->as.payload); /* untyped frames keep their payload's bytes */
        break;
    }
}

int natter_frame_encode(const natter_frame *frame, uint8_t *out, size_t cap, size_t *len)
{
    /* Measure first (a writer with no room only counts), since Length comes first. */
    natter_writer m = {NULL, 0, 0, 0}, w = {out, cap, 0, 0};
    natter_wr_varint(&m, frame->type);
    wr_payload(&m, frame);
    if (m.err) return m.err;
    if (m.len == 0 || m.len > NATTER_MAX_FRAME_SIZE_CAP) return NATTER_E_INVALID;
    natter_wr_varint(&w, m.len);
    natter_wr_varint(&w, frame->type);
    wr_payload(&w, frame);
    if (w.len > cap) return NATTER_E_NO_SPACE;
    *len = w.len;
    return NATTER_OK;
}
