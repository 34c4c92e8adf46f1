/*
 * natter-c: a client of the natter wire protocol (spec/PROTOCOL.md) for small devices.
 *
 * C99, no dynamic allocation: every buffer is the caller's. Three layers, usable alone:
 *
 *   codec    natter_frame_split / _decode / _encode: bytes <-> frames, no state.
 *   session  natter_session_*: the client state machine of the minimal profile (spec 12).
 *            It never does I/O and never reads a clock: bytes and now_ms go in, bytes,
 *            callbacks and a deadline come out, so tests run it in virtual time.
 *   drive    natter_drive: runs a session over a natter_transport (read/write callbacks),
 *            for POSIX sockets (natter_posix.h), TLS, lwIP or an RTOS.
 *
 * Strings (s) and byte strings (b) are natter_bytes views into the caller's buffer: never
 * NUL-terminated, valid only as long as that buffer (for a callback, during the call).
 */
#ifndef NATTER_H
#define NATTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* Wire values                                                                                 */

/** The largest varint value, 2^62 - 1 (spec 2.2). */
#define NATTER_VARINT_MAX ((UINT64_C(1) << 62) - 1)
/** The maximum frame size a peer assumes until it hears otherwise [NWP-3-3]. */
#define NATTER_DEFAULT_MAX_FRAME_SIZE 65536u
/** No maximum frame size may exceed 16 MiB [NWP-3-4]. */
#define NATTER_MAX_FRAME_SIZE_CAP 16777216u
/** The smallest max_frame_size a HELLO may announce [NWP-3-4]. */
#define NATTER_MIN_MAX_FRAME_SIZE 4096u

/** Results: 0 is success, 1 "need more bytes", negative values are errors. */
enum natter_result {
    NATTER_OK = 0,
    NATTER_INCOMPLETE = 1,
    /* Decode errors, as named in spec/vectors/README.md. All are connection errors [NWP-3-7]. */
    NATTER_E_FRAME_TOO_LARGE = -1,
    NATTER_E_EMPTY_FRAME = -2,
    NATTER_E_TRUNCATED = -3,
    NATTER_E_NON_MINIMAL_VARINT = -4,
    NATTER_E_INVALID_UTF8 = -5,
    NATTER_E_INVALID_FLAG = -6,
    NATTER_E_TRAILING_DATA = -7,
    /* Local errors. */
    NATTER_E_NO_SPACE = -8,  /* the output buffer or the outbox is too small */
    NATTER_E_INVALID = -9    /* an argument out of range (a varint above 2^62 - 1, id 0) */
};

/** The name of a result: the vector name for decode errors ("truncated"). */
const char *natter_result_name(int result);

/** Frame types (spec Table 2). Other codes are unknown and skipped [NWP-3-6]. */
enum natter_type {
    NATTER_HELLO = 0x01,
    NATTER_READY = 0x02,
    NATTER_PING = 0x03,
    NATTER_PONG = 0x04,
    NATTER_GOAWAY = 0x05,
    NATTER_ERROR = 0x06,
    NATTER_DONE = 0x07,
    NATTER_SEND = 0x10,
    NATTER_SEND_ACK = 0x11,
    NATTER_DELIVER = 0x12,
    NATTER_ACK = 0x13,
    NATTER_RESUME = 0x18,
    NATTER_SYNCED = 0x19,
    NATTER_GAP = 0x1a
    /* The other types of version 1 are checked by natter_layout_check, not typed. */
};

/** Error codes (spec Table 6); codes below 0x10 close the connection [NWP-10-1]. */
enum natter_code {
    NATTER_PROTOCOL_VIOLATION = 0x01,
    NATTER_FRAME_TOO_LARGE = 0x02,
    NATTER_UNSUPPORTED_VERSION = 0x03,
    NATTER_UNAUTHENTICATED = 0x04,
    NATTER_TOKEN_EXPIRED = 0x05,
    NATTER_IDLE_TIMEOUT = 0x06,
    NATTER_SLOW_CONSUMER = 0x07,
    NATTER_TOO_MANY_CONNECTIONS = 0x08,
    NATTER_SHUTTING_DOWN = 0x09,
    NATTER_INTERNAL_ERROR = 0x0b,
    NATTER_INVALID_REQUEST = 0x10,
    NATTER_PAYLOAD_TOO_LARGE = 0x13,
    NATTER_DUPLICATE_MISMATCH = 0x14,
    NATTER_RATE_LIMITED = 0x15,
    NATTER_UNAVAILABLE = 0x17
};

/** A string or byte string: a view, not NUL-terminated. */
typedef struct natter_bytes {
    const uint8_t *ptr;
    size_t len;
} natter_bytes;

/* ------------------------------------------------------------------------------------------ */
/* Frames of the minimal profile (spec 6.1, 6.2); field names as in the spec                   */

typedef struct natter_hello {
    uint64_t min_version, max_version, features, max_frame_size;
    natter_bytes token, agent;
} natter_hello;

typedef struct natter_ready {
    uint64_t version, features, max_frame_size, heartbeat_ms, session;
    natter_bytes user, device;
    uint64_t inbox_head, server_time;
} natter_ready;

/** PING and PONG. */
typedef struct natter_ping {
    uint64_t nonce;
} natter_ping;

typedef struct natter_goaway {
    uint64_t code, reconnect_ms;
    natter_bytes message;
} natter_goaway;

typedef struct natter_error {
    uint64_t request, code, retry_after_ms;
    natter_bytes message;
} natter_error;

typedef struct natter_send {
    uint64_t request;
    natter_bytes conversation;
    uint64_t client_msg_id, kind, target;
    natter_bytes content_type, body;
} natter_send;

typedef struct natter_send_ack {
    uint64_t request, seq, timestamp;
    bool duplicate;
} natter_send_ack;

/** An entry of a conversation's log (spec 4.1). */
typedef struct natter_event {
    uint64_t seq, kind, target;
    uint8_t flags;
    uint64_t timestamp;
    natter_bytes sender, device;
    uint64_t client_msg_id;
    natter_bytes content_type, body;
} natter_event;

typedef struct natter_deliver {
    uint64_t inbox_seq;
    natter_bytes conversation;
    natter_event event;
} natter_deliver;

/** ACK. */
typedef struct natter_ack {
    uint64_t inbox_seq;
} natter_ack;

typedef struct natter_resume {
    uint64_t request, after;
} natter_resume;

typedef struct natter_synced {
    uint64_t request, inbox_head;
} natter_synced;

typedef struct natter_gap {
    natter_bytes conversation;
    uint64_t from, to;
} natter_gap;

/** A decoded frame: `type` says which member of `as` holds it. */
typedef struct natter_frame {
    uint64_t type;
    union {
        natter_hello hello;
        natter_ready ready;
        natter_ping ping; /* PING and PONG */
        natter_goaway goaway;
        natter_error error;
        natter_send send;
        natter_send_ack send_ack;
        natter_deliver deliver;
        natter_ack ack;
        natter_resume resume;
        natter_synced synced;
        natter_gap gap;
        /* Any other type, known or not: every byte after the type code. */
        natter_bytes payload;
    } as;
} natter_frame;

/* ------------------------------------------------------------------------------------------ */
/* Codec                                                                                       */

/**
 * Finds the first frame of a received byte stream.
 *
 * Returns NATTER_OK with *frame_len (length prefix included) once the whole frame is in buf,
 * NATTER_INCOMPLETE while it is not, or a decode error. The Length is checked against
 * max_frame_size (capped at 16 MiB) as soon as its varint is complete [NWP-3-3].
 */
int natter_frame_split(const uint8_t *buf, size_t len, uint64_t max_frame_size,
                       size_t *frame_len);

/**
 * Decodes exactly one complete frame, length prefix included.
 *
 * Typed frames fill out->as; other known types are checked against their layout and
 * unknown types are not, both leaving their payload in out->as.payload. Bytes after the
 * known fields are ignored [NWP-11-2]; bytes after the frame are NATTER_E_TRAILING_DATA.
 * Views in *out point into frame.
 */
int natter_frame_decode(const uint8_t *frame, size_t len, natter_frame *out);

/** Encodes a frame, length prefix included; on NATTER_OK *len is its size. */
int natter_frame_encode(const natter_frame *frame, uint8_t *out, size_t cap, size_t *len);

/** Who may send a frame type: 'C' client, 'S' server, 'E' either, 'L' link; 0 if unknown. */
char natter_type_origin(uint64_t type);

/**
 * Reports each value of a payload in wire order: 'i' varint, 'y' byte, 'f' flag (value 0/1),
 * 's' string, 'b' byte string; '[' a list of `value` items and ']' its end; '{' a record
 * (`value` is 'E' event, 'M' member, 'S' summary) and '}' its end.
 */
typedef void natter_visit(void *ctx, char kind, uint64_t value, natter_bytes bytes);

/**
 * Checks a payload against the layout of its (known) frame type and reports its values to
 * visit (which may be NULL). Unknown types pass unchecked.
 */
int natter_layout_check(uint64_t type, const uint8_t *payload, size_t len, natter_visit *visit,
                        void *ctx);

/* ------------------------------------------------------------------------------------------ */
/* Session: the minimal client profile (spec 12), sans I/O                                     */

/** No inbox cursor stored yet: the session resumes from READY's inbox_head [NWP-6.1.2-2]. */
#define NATTER_NO_CURSOR UINT64_MAX

enum natter_state {
    NATTER_S_WAITING,    /* disconnected; natter_session_tick reconnects at the deadline */
    NATTER_S_CONNECTING, /* open the transport, then call natter_session_opened (or _closed) */
    NATTER_S_HELLO,      /* HELLO sent; waiting for READY */
    NATTER_S_READY,      /* RESUME sent; the inbox replays; SENDs flow */
    NATTER_S_LIVE,       /* SYNCED: what arrives is live */
    NATTER_S_DRAINING,   /* GOAWAY received: no new requests; the server closes [NWP-5.4-2] */
    NATTER_S_CLOSING,    /* write what tx holds (best effort), close, call natter_session_closed */
    NATTER_S_STOPPED     /* will not reconnect with this token [NWP-5.5-3] */
};

/**
 * What the session tells the application; any callback may be NULL. Callbacks run inside
 * natter_session_* calls and may call natter_session_send, but no other session function.
 */
typedef struct natter_callbacks {
    void *user;
    /** A delivered event, new to this device; store or show it before returning. */
    void (*on_deliver)(void *user, const natter_deliver *deliver);
    /** Persist this inbox cursor (non-volatile memory); it is ACKed after the call returns. */
    void (*save_cursor)(void *user, uint64_t inbox_seq);
    /** A SEND is durable (ack->duplicate: a resent one the server already had). */
    void (*on_send_ack)(void *user, uint64_t client_msg_id, const natter_send_ack *ack);
    /** A SEND was refused for good; it leaves the outbox. */
    void (*on_send_error)(void *user, uint64_t client_msg_id, const natter_error *error);
    /** Events that will not come: of gap->conversation, seqs from..to (too large for rx, or
     *  dropped); or if conversation is empty, inbox entries pruned from the server. */
    void (*on_gap)(void *user, const natter_gap *gap);
    /** The state changed; code is the error code that caused a close, else 0. */
    void (*on_state)(void *user, int state, uint64_t code);
} natter_callbacks;

/** A session's setup; zero values of the tunables pick the defaults shown. */
typedef struct natter_config {
    natter_bytes token; /* bearer credential (spec 8.1); must outlive the session */
    natter_bytes agent; /* for the server's logs, e.g. "natter-c/0.1"; may be empty */
    uint64_t cursor;    /* the inbox_seq last saved by save_cursor, or NATTER_NO_CURSOR */
    uint8_t *rx_buf;    /* received bytes; max_frame_size announced = rx_cap - 4 >= 4096 */
    size_t rx_cap;
    uint8_t *tx_buf;    /* bytes to write; must hold HELLO, and each SEND whole */
    size_t tx_cap;
    uint8_t *outbox_buf; /* SENDs waiting for their SEND_ACK, kept across reconnects */
    size_t outbox_cap;
    uint32_t max_in_flight;  /* SENDs written and not answered: 8 (1 keeps order on retries) */
    uint32_t ack_delay_ms;   /* ACK coalescing window: 200 [NWP-6.2.4-1] */
    uint32_t handshake_ms;   /* connect-to-READY deadline: 10000 */
    uint32_t backoff_min_ms; /* reconnect backoff, doubling: 1000 to 60000 [NWP-5.5-3] */
    uint32_t backoff_max_ms;
    uint32_t seed;           /* seeds the reconnect jitter; vary it per device */
    natter_callbacks cb;
} natter_config;

/** A session. Treat the fields as private; sizeof(natter_session) is its whole RAM. */
typedef struct natter_session {
    natter_config cfg;
    int state;
    uint64_t rx_max;                 /* the max_frame_size this side announced */
    uint64_t tx_max;                 /* the server's max_frame_size [NWP-5.1-5] */
    size_t rx_len;                   /* rx_buf[0..rx_len) is buffered */
    size_t tx_head, tx_tail;         /* tx_buf[tx_head..tx_tail) waits to be written */
    size_t outbox_len;               /* outbox_buf[0..outbox_len) holds entries */
    uint64_t cursor, acked;          /* highest inbox_seq saved / ACKed */
    uint64_t resume_request;         /* the RESUME awaiting SYNCED, 0 if none */
    uint64_t next_request, next_nonce;
    uint64_t heartbeat_ms;
    uint64_t last_rx, last_tx;       /* when bytes last arrived / a frame was last queued */
    uint64_t ack_due;                /* when the pending ACK goes out */
    uint64_t retry_at;               /* when SENDs need writing: a retry's time, 0 for now */
    uint64_t deadline_at;            /* reconnect (WAITING), READY (HELLO), close (DRAINING) */
    uint64_t reconnect_ms;           /* GOAWAY's window, or 0 for the backoff */
    uint64_t close_code;             /* why the connection is closing */
    uint32_t gap_skips;              /* conversation GAPs since the last DELIVER */
    uint32_t backoff_ms, rng;
    bool has_cursor, fatal;
} natter_session;

/** Starts a session; its state is NATTER_S_CONNECTING. Returns NATTER_E_INVALID on bad cfg. */
int natter_session_init(natter_session *s, const natter_config *cfg, uint64_t now_ms);

/** The transport is open: queues HELLO [NWP-5.1-1]. */
void natter_session_opened(natter_session *s, uint64_t now_ms);
/** The transport closed, failed or could not open: schedules the reconnect. */
void natter_session_closed(natter_session *s, uint64_t now_ms);

/** Where to read received bytes into: returns the room at *buf (0 when full). */
size_t natter_session_rx_space(natter_session *s, uint8_t **buf);
/** n bytes were read into the room: processes every complete frame. */
void natter_session_rx_done(natter_session *s, size_t n, uint64_t now_ms);
/** The bytes to write next: returns how many wait at *buf. */
size_t natter_session_tx_pending(const natter_session *s, const uint8_t **buf);
/** n of them were written. */
void natter_session_tx_done(natter_session *s, size_t n);

/** Runs the timers: heartbeat, dead connection, ACK, retries, reconnect. */
void natter_session_tick(natter_session *s, uint64_t now_ms);
/** The time by which natter_session_tick must run next. */
uint64_t natter_session_deadline(const natter_session *s);

/**
 * Queues a message for conv; it is (re)sent, unchanged, until its SEND_ACK [NWP-6.2.1-1].
 * client_msg_id must be non-zero and never reused for another message of conv (keep its
 * counter in non-volatile memory). Returns NATTER_E_NO_SPACE when the outbox is full.
 * The SEND goes out at the next natter_session_tick (natter_drive); a callback may call this.
 */
int natter_session_send(natter_session *s, natter_bytes conv, uint64_t client_msg_id,
                        natter_bytes content_type, natter_bytes body);
/** The number of SENDs waiting for their answer. */
size_t natter_session_pending(const natter_session *s);
/** Replaces the token (e.g. after TOKEN_EXPIRED) and reconnects a stopped session. */
void natter_session_set_token(natter_session *s, natter_bytes token, uint64_t now_ms);

/* ------------------------------------------------------------------------------------------ */
/* Drive: a session over a transport                                                           */

/** A byte stream: TCP, TLS, ... Non-blocking read and write; open and close may block. */
typedef struct natter_transport {
    void *ctx;
    /** Connects; 0 on success. */
    int (*open)(void *ctx);
    /** Reads up to cap bytes: > 0 the count, 0 none available now, < 0 closed or failed. */
    long (*read)(void *ctx, uint8_t *buf, size_t cap);
    /** Writes up to len bytes: >= 0 the count written, < 0 closed or failed. */
    long (*write)(void *ctx, const uint8_t *buf, size_t len);
    void (*close)(void *ctx);
} natter_transport;

/** Does everything that is due: open, read, process, write, close. Call it when the
 *  transport is readable or writable, after natter_session_send, and by the deadline. */
void natter_drive(natter_session *s, const natter_transport *t, uint64_t now_ms);

#ifdef __cplusplus
}
#endif

#endif
