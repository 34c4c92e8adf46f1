/* Frames as the JSON of spec/vectors/README.md: from typed structs, and from layout walks. */
#include "frame_json.h"

#include <stdio.h>
#include <string.h>

/* An append-only text buffer that truncates instead of overflowing. */
typedef struct jbuf {
    char *p;
    size_t cap, len;
} jbuf;

static void put(jbuf *j, const char *s)
{
    for (; *s; s++) {
        if (j->len + 1 < j->cap) j->p[j->len] = *s;
        j->len++;
    }
    if (j->cap) j->p[j->len < j->cap ? j->len : j->cap - 1] = '\0';
}

/* Integers above 2^53 - 1 are strings, so doubles read them exactly (vectors README). */
static void num(jbuf *j, uint64_t v)
{
    char s[32];
    snprintf(s, sizeof s, v > 9007199254740991ull ? "\"%llu\"" : "%llu", (unsigned long long)v);
    put(j, s);
}

static void str(jbuf *j, natter_bytes b)
{
    char s[8];
    put(j, "\"");
    for (size_t i = 0; i < b.len; i++) {
        uint8_t c = b.ptr[i];
        if (c == '"' || c == '\\') {
            s[0] = '\\', s[1] = (char)c, s[2] = 0;
        } else if (c < 0x20) {
            snprintf(s, sizeof s, "\\u%04x", c);
        } else {
            s[0] = (char)c, s[1] = 0;
        }
        put(j, s);
    }
    put(j, "\"");
}

static void hex(jbuf *j, natter_bytes b)
{
    char s[3];
    put(j, "\"");
    for (size_t i = 0; i < b.len; i++) {
        snprintf(s, sizeof s, "%02x", b.ptr[i]);
        put(j, s);
    }
    put(j, "\"");
}

static void key(jbuf *j, const char *name)
{
    put(j, ", \"");
    put(j, name);
    put(j, "\": ");
}

static void kn(jbuf *j, const char *name, uint64_t v) { key(j, name), num(j, v); }
static void ks(jbuf *j, const char *name, natter_bytes v) { key(j, name), str(j, v); }
static void kb(jbuf *j, const char *name, natter_bytes v) { key(j, name), hex(j, v); }

int json_typed(const natter_frame *f, char *out, size_t cap)
{
    jbuf j = {out, cap, 0};
    const natter_event *e = &f->as.deliver.event;
    switch (f->type) {
    case NATTER_HELLO:
        put(&j, "{\"type\": \"HELLO\"");
        kn(&j, "min_version", f->as.hello.min_version);
        kn(&j, "max_version", f->as.hello.max_version);
        kn(&j, "features", f->as.hello.features);
        kn(&j, "max_frame_size", f->as.hello.max_frame_size);
        kb(&j, "token", f->as.hello.token);
        ks(&j, "agent", f->as.hello.agent);
        break;
    case NATTER_READY:
        put(&j, "{\"type\": \"READY\"");
        kn(&j, "version", f->as.ready.version);
        kn(&j, "features", f->as.ready.features);
        kn(&j, "max_frame_size", f->as.ready.max_frame_size);
        kn(&j, "heartbeat_ms", f->as.ready.heartbeat_ms);
        kn(&j, "session", f->as.ready.session);
        ks(&j, "user", f->as.ready.user);
        ks(&j, "device", f->as.ready.device);
        kn(&j, "inbox_head", f->as.ready.inbox_head);
        kn(&j, "server_time", f->as.ready.server_time);
        break;
    case NATTER_PING:
    case NATTER_PONG:
        put(&j, f->type == NATTER_PING ? "{\"type\": \"PING\"" : "{\"type\": \"PONG\"");
        kn(&j, "nonce", f->as.ping.nonce);
        break;
    case NATTER_GOAWAY:
        put(&j, "{\"type\": \"GOAWAY\"");
        kn(&j, "code", f->as.goaway.code);
        kn(&j, "reconnect_ms", f->as.goaway.reconnect_ms);
        ks(&j, "message", f->as.goaway.message);
        break;
    case NATTER_ERROR:
        put(&j, "{\"type\": \"ERROR\"");
        kn(&j, "request", f->as.error.request);
        kn(&j, "code", f->as.error.code);
        kn(&j, "retry_after_ms", f->as.error.retry_after_ms);
        ks(&j, "message", f->as.error.message);
        break;
    case NATTER_SEND:
        put(&j, "{\"type\": \"SEND\"");
        kn(&j, "request", f->as.send.request);
        ks(&j, "conversation", f->as.send.conversation);
        kn(&j, "client_msg_id", f->as.send.client_msg_id);
        kn(&j, "kind", f->as.send.kind);
        kn(&j, "target", f->as.send.target);
        ks(&j, "content_type", f->as.send.content_type);
        kb(&j, "body", f->as.send.body);
        break;
    case NATTER_SEND_ACK:
        put(&j, "{\"type\": \"SEND_ACK\"");
        kn(&j, "request", f->as.send_ack.request);
        kn(&j, "seq", f->as.send_ack.seq);
        kn(&j, "timestamp", f->as.send_ack.timestamp);
        key(&j, "duplicate");
        put(&j, f->as.send_ack.duplicate ? "true" : "false");
        break;
    case NATTER_DELIVER:
        put(&j, "{\"type\": \"DELIVER\"");
        kn(&j, "inbox_seq", f->as.deliver.inbox_seq);
        ks(&j, "conversation", f->as.deliver.conversation);
        put(&j, ", \"event\": {\"seq\": ");
        num(&j, e->seq);
        kn(&j, "kind", e->kind);
        kn(&j, "target", e->target);
        kn(&j, "flags", e->flags);
        kn(&j, "timestamp", e->timestamp);
        ks(&j, "sender", e->sender);
        ks(&j, "device", e->device);
        kn(&j, "client_msg_id", e->client_msg_id);
        ks(&j, "content_type", e->content_type);
        kb(&j, "body", e->body);
        put(&j, "}");
        break;
    case NATTER_ACK:
        put(&j, "{\"type\": \"ACK\"");
        kn(&j, "inbox_seq", f->as.ack.inbox_seq);
        break;
    case NATTER_RESUME:
        put(&j, "{\"type\": \"RESUME\"");
        kn(&j, "request", f->as.resume.request);
        kn(&j, "after", f->as.resume.after);
        break;
    case NATTER_SYNCED:
        put(&j, "{\"type\": \"SYNCED\"");
        kn(&j, "request", f->as.synced.request);
        kn(&j, "inbox_head", f->as.synced.inbox_head);
        break;
    case NATTER_GAP:
        put(&j, "{\"type\": \"GAP\"");
        ks(&j, "conversation", f->as.gap.conversation);
        kn(&j, "from", f->as.gap.from);
        kn(&j, "to", f->as.gap.to);
        break;
    default:
        return 0;
    }
    put(&j, "}");
    return 1;
}

/* Field names by type, in wire order, for the layout walk. */
static const struct {
    uint64_t type;
    const char *name, *fields;
} names[] = {
    {0x01, "HELLO", "min_version max_version features max_frame_size token agent"},
    {0x02, "READY",
     "version features max_frame_size heartbeat_ms session user device inbox_head server_time"},
    {0x03, "PING", "nonce"},
    {0x04, "PONG", "nonce"},
    {0x05, "GOAWAY", "code reconnect_ms message"},
    {0x06, "ERROR", "request code retry_after_ms message"},
    {0x07, "DONE", "request"},
    {0x10, "SEND", "request conversation client_msg_id kind target content_type body"},
    {0x11, "SEND_ACK", "request seq timestamp duplicate"},
    {0x12, "DELIVER", "inbox_seq conversation event"},
    {0x13, "ACK", "inbox_seq"},
    {0x14, "MARK", "request conversation marker seq"},
    {0x15, "RECEIPT", "conversation user delivered read"},
    {0x16, "TYPING", "conversation active"},
    {0x17, "TYPING_UPDATE", "conversation user active"},
    {0x18, "RESUME", "request after"},
    {0x19, "SYNCED", "request inbox_head"},
    {0x1a, "GAP", "conversation from to"},
    {0x20, "HISTORY", "request conversation anchor direction limit"},
    {0x21, "HISTORY_PAGE", "request conversation more events"},
    {0x22, "CONVERSATIONS", "request cursor limit"},
    {0x23, "CONVERSATION_LIST", "request next_cursor conversations"},
    {0x30, "GROUP_CREATE", "request title members"},
    {0x31, "GROUP_UPDATE", "request conversation op user role"},
    {0x32, "GROUP_GET", "request conversation"},
    {0x33, "GROUP_INFO", "request conversation title members"},
    {0x40, "PRESENCE_SUBSCRIBE", "request conversation ttl_ms"},
    {0x41, "PRESENCE", "user status last_seen"},
    {0x60, "LINK_HELLO", "version node role ring_version secret"},
    {0x61, "LINK_READY", "node ring_version"},
    {0x62, "ROUTED", "session user device frame"},
    {0x63, "SESSION_OPEN", "session user device lease_ms"},
    {0x64, "SESSION_CLOSE", "session"},
    {0x65, "FANOUT", "conversation inbox users event"},
    {0x66, "PUSH", "users frame"},
    {0x67, "INTEREST", "node session ttl_ms users conversation"},
    {0x68, "FETCH", "request conversation seqs"},
    {0x69, "EVENTS", "request conversation events"},
    {0x6a, "FANOUT_ACK", "conversation seq"},
};

static const char *record_fields(uint64_t kind)
{
    switch (kind) {
    case 'E':
        return "seq kind target flags timestamp sender device client_msg_id content_type body";
    case 'M': return "user role";
    default: return "conversation kind title last_seq last_timestamp read_seq unread";
    }
}

/* The walk's nesting: objects take their keys from a name list, lists have none. */
typedef struct level {
    const char *names; /* the next field names, or NULL in a list */
    int items;         /* values written so far: all but the first need a comma */
} level;

typedef struct walker {
    jbuf j;
    level stack[8];
    int depth;
} walker;

static void begin_value(walker *w)
{
    level *l = &w->stack[w->depth];
    if (l->items++ > 0) put(&w->j, ", ");
    if (l->names) {
        const char *end = strchr(l->names, ' ');
        size_t n = end ? (size_t)(end - l->names) : strlen(l->names);
        char name[40];
        snprintf(name, sizeof name, "\"%.*s\": ", (int)n, l->names);
        put(&w->j, name);
        l->names += n + (end ? 1 : 0);
    }
}

static void visit(void *ctx, char kind, uint64_t value, natter_bytes bytes)
{
    walker *w = ctx;
    if (kind == ']' || kind == '}') {
        put(&w->j, kind == ']' ? "]" : "}");
        w->depth--;
        return;
    }
    begin_value(w);
    switch (kind) {
    case 'f': put(&w->j, value ? "true" : "false"); break;
    case 's': str(&w->j, bytes); break;
    case 'b': hex(&w->j, bytes); break;
    case '[':
    case '{':
        put(&w->j, kind == '[' ? "[" : "{");
        w->depth++;
        w->stack[w->depth].names = kind == '{' ? record_fields(value) : NULL;
        w->stack[w->depth].items = 0;
        break;
    default: num(&w->j, value); break;
    }
}

int json_layout(const uint8_t *frame, size_t len, char *out, size_t cap)
{
    natter_frame f;
    walker w;
    int r = natter_frame_decode(frame, len, &f);
    size_t i = 0;
    if (r != NATTER_OK) return r;
    w.j.p = out, w.j.cap = cap, w.j.len = 0;
    w.depth = 0;
    while (i < sizeof names / sizeof names[0] && names[i].type != f.type) i++;
    if (i == sizeof names / sizeof names[0]) {
        put(&w.j, "{\"type\": \"UNKNOWN\", \"frame_type\": ");
        num(&w.j, f.type);
        put(&w.j, ", \"payload\": ");
        hex(&w.j, f.as.payload);
        put(&w.j, "}");
        return NATTER_OK;
    }
    /* Typed frames keep no payload view: find it again after the two varints. */
    {
        natter_bytes p;
        size_t skip = 0;
        for (int k = 0; k < 2; k++) skip += (size_t)1 << (frame[skip] >> 6);
        p.ptr = frame + skip, p.len = len - skip;
        put(&w.j, "{\"type\": \"");
        put(&w.j, names[i].name);
        put(&w.j, "\"");
        w.stack[0].names = names[i].fields;
        w.stack[0].items = 1; /* "type" is already there */
        r = natter_layout_check(f.type, p.ptr, p.len, visit, &w);
    }
    put(&w.j, "}");
    return r;
}

void json_squeeze(char *s)
{
    char *o = s;
    int in_string = 0;
    for (; *s; s++) {
        if (in_string) {
            *o++ = *s;
            if (*s == '\\' && s[1]) *o++ = *++s;
            else if (*s == '"') in_string = 0;
        } else if (*s == '"') {
            *o++ = *s, in_string = 1;
        } else if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r') {
            *o++ = *s;
        }
    }
    *o = '\0';
}
