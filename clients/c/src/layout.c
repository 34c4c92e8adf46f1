/*
 * The layout of every frame type of version 1, as data: checks the frames the minimal client
 * does not type [NWP-12-1], and lets tests and fuzzers walk any frame.
 *
 * A layout is a string: its first character is who sends the frame (C, S, E either, L link),
 * then one character per field: i varint, y byte, f flag, s string, b byte string, E event,
 * M member, S summary (spec 4), and *x a list of x. Fields after '|' were appended by a
 * revision of version 1 (INTEREST's conversation): a frame from an older sender ends before
 * them, as one from a newer sender may carry more [NWP-11-2].
 */
#include "wire.h"

static const struct {
    uint8_t type;
    char layout[11];
} layouts[] = {
    {0x01, "Ciiiibs"},   /* HELLO */
    {0x02, "Siiiiissii"}, /* READY */
    {0x03, "Ei"},        /* PING */
    {0x04, "Ei"},        /* PONG */
    {0x05, "Siis"},      /* GOAWAY */
    {0x06, "Eiiis"},     /* ERROR */
    {0x07, "Si"},        /* DONE */
    {0x10, "Cisiiisb"},  /* SEND */
    {0x11, "Siiif"},     /* SEND_ACK */
    {0x12, "SisE"},      /* DELIVER */
    {0x13, "Ci"},        /* ACK */
    {0x14, "Cisii"},     /* MARK */
    {0x15, "Sssii"},     /* RECEIPT */
    {0x16, "Csf"},       /* TYPING */
    {0x17, "Sssf"},      /* TYPING_UPDATE */
    {0x18, "Cii"},       /* RESUME */
    {0x19, "Sii"},       /* SYNCED */
    {0x1a, "Ssii"},      /* GAP */
    {0x20, "Cisiii"},    /* HISTORY */
    {0x21, "Sisf*E"},    /* HISTORY_PAGE */
    {0x22, "Cibi"},      /* CONVERSATIONS */
    {0x23, "Sib*S"},     /* CONVERSATION_LIST */
    {0x30, "Cis*s"},     /* GROUP_CREATE */
    {0x31, "Cisisi"},    /* GROUP_UPDATE */
    {0x32, "Cis"},       /* GROUP_GET */
    {0x33, "Siss*M"},    /* GROUP_INFO */
    {0x40, "Cisi"},      /* PRESENCE_SUBSCRIBE */
    {0x41, "Ssii"},      /* PRESENCE */
    {0x60, "Lisiib"},    /* LINK_HELLO */
    {0x61, "Lsi"},       /* LINK_READY */
    {0x62, "Lissb"},     /* ROUTED */
    {0x63, "Lissi"},     /* SESSION_OPEN */
    {0x64, "Li"},        /* SESSION_CLOSE */
    {0x65, "Lsf*sE"},    /* FANOUT */
    {0x66, "L*sb"},      /* PUSH */
    {0x67, "Lsii*s|s"},  /* INTEREST */
    {0x68, "Lis*i"},     /* FETCH */
    {0x69, "Lis*E"},     /* EVENTS */
    {0x6a, "Lsi"},       /* FANOUT_ACK */
};

static const char *find(uint64_t type)
{
    for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; i++)
        if (layouts[i].type == type) return layouts[i].layout;
    return NULL;
}

char natter_type_origin(uint64_t type)
{
    const char *layout = find(type);
    return layout ? layout[0] : 0;
}

typedef struct walk {
    natter_reader r;
    natter_visit *visit;
    void *ctx;
} walk;

static void report(walk *k, char kind, uint64_t value, natter_bytes bytes)
{
    if (k->visit && !k->r.err) k->visit(k->ctx, kind, value, bytes);
}

static void field(walk *k, char kind);

static void record(walk *k, char kind, const char *fields)
{
    natter_bytes none = {NULL, 0};
    report(k, '{', (uint64_t)kind, none);
    while (*fields) field(k, *fields++);
    report(k, '}', 0, none);
}

static void field(walk *k, char kind)
{
    natter_bytes none = {NULL, 0}, b;
    uint64_t v;
    switch (kind) {
    case 'i':
        v = natter_rd_varint(&k->r);
        report(k, kind, v, none);
        break;
    case 'y':
        v = natter_rd_byte(&k->r);
        report(k, kind, v, none);
        break;
    case 'f':
        v = natter_rd_flag(&k->r);
        report(k, kind, v, none);
        break;
    case 's':
        b = natter_rd_str(&k->r);
        report(k, kind, 0, b);
        break;
    case 'b':
        b = natter_rd_bytes(&k->r);
        report(k, kind, 0, b);
        break;
    case 'E': record(k, kind, "iiiyissisb"); break;
    case 'M': record(k, kind, "si"); break;
    case 'S': record(k, kind, "sisiiii"); break;
    default: break;
    }
}

int natter_layout_check(uint64_t type, const uint8_t *payload, size_t len, natter_visit *visit,
                        void *ctx)
{
    walk k = {{payload, payload + len, 0}, visit, ctx};
    natter_bytes none = {NULL, 0};
    const char *f = find(type);
    if (!f) return NATTER_OK; /* unknown types are skipped whole [NWP-3-6] */
    for (f++; *f && !k.r.err; f++) {
        if (*f == '|') {
            if (k.r.p == k.r.end) break;
        } else if (*f == '*') {
            uint64_t count = natter_rd_varint(&k.r);
            f++;
            /* Each item takes a byte or more: a larger count cannot be honest [NWP-2.2-5]. */
            if (!k.r.err && count > (uint64_t)(k.r.end - k.r.p)) k.r.err = NATTER_E_TRUNCATED;
            report(&k, '[', count, none);
            while (count-- > 0 && !k.r.err) field(&k, *f);
            report(&k, ']', 0, none);
        } else {
            field(&k, *f);
        }
    }
    return k.r.err;
}
