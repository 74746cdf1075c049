/* rmsg.h - router message codec (DESIGN §7): pure functions over bytes, no I/O.
 *
 * Every message, both directions:
 *   u16 type BE | u16 slen BE | u32 len BE | slen bytes S | len bytes D
 * Framing checks depend on the 8-byte header alone, so a reader can reject a bad
 * message before buffering (or allocating for) its body.
 *
 * Types 1..15 are checked whole on the header (a bad one is a framing error).
 * Types 16..34 (backend API v2) are framed on the header only: their D is
 * bounded there (by max_len, or RMSG_MAX_REFUSED for types whose D is small),
 * and their S and D shapes are checked on the body by rmsg_validate. A message
 * that fails rmsg_validate is whole and well framed: the reader skips it
 * (refuses it) and the stream stays in step. */
#ifndef FOOKING_RMSG_H
#define FOOKING_RMSG_H

#include <stddef.h>
#include <stdint.h>

#define RMSG_HEADER_LEN  8
#define RMSG_SID_LEN     16
#define RMSG_MAX_SIDS    4095 /* slen is a u16: 4095 * 16 = 65520 */
#define RMSG_MAX_CHANNEL 255
#define RMSG_AUTH_LEN    8 /* u32 server id, u32 worker id (then the secret, if any) */
/* Longest ROUTER_SECRET (config_load refuses more: CONFIG_MAX_SECRET). AUTH and
 * SECRET are what an unauthenticated peer may send, so their D is capped by
 * type, not by the caller's maximum: the router never buffers more than this
 * for a peer it does not trust yet. */
#define RMSG_MAX_SECRET 256
/* PING/PONG may carry a token (echoed back); never more than this. */
#define RMSG_MAX_PING 64
/* Backend API v2. */
#define RMSG_MAX_UID     128   /* uid: 1..128 bytes */
#define RMSG_MAX_SESSION 16384 /* SESSION_SET data; a GW_ANSWER record's data */
/* Framing cap on D for v2 types whose D is small (a uid, a query id, nothing):
 * a bigger D is not worth reading to refuse, so it is a framing error. */
#define RMSG_MAX_REFUSED 65535
#define RMSG_MAX_ERROR   1024 /* ERROR text */
#define RMSG_QID_LEN     4    /* GW_QUERY / GW_ANSWER query id, u32 */
/* A GW_ANSWER / CH_SESSIONS record head: SID, u32 data length. */
#define RMSG_RECORD_HEAD (RMSG_SID_LEN + 4)
/* A CH_MEMBERS record: SID, u8 uid length, uid. */
#define RMSG_MEMBER_MAX (RMSG_SID_LEN + 1 + RMSG_MAX_UID)
/* A CHANNELS record: u8 name length, name, u32 members. */
#define RMSG_CHANNEL_REC_MAX (1 + RMSG_MAX_CHANNEL + 4)
/* The v2 PING's token: the router sends it right after a good AUTH. */
#define RMSG_V2_TOKEN "fooking/2"
#define RMSG_VERSION  2 /* HELLO's D */

/* Room rmsg_escape needs for the longest channel name, with its NUL. */
#define RMSG_ESCAPE_MAX (4 * RMSG_MAX_CHANNEL + 1)

enum rmsg_type {
    RMSG_AUTH = 1,      /* gateway -> router: D = u32 server id, u32 worker id [, secret] */
    RMSG_CONN = 2,      /* gateway -> router: S = SIDs */
    RMSG_CLOSE = 3,     /* gateway -> router: S = SIDs */
    RMSG_KICK = 4,      /* backend -> router -> gateway: S = SIDs */
    RMSG_SEND_MSG = 5,  /* S = SIDs, D = message */
    RMSG_SEND_ALL = 6,  /* D = message */
    RMSG_CH_ADD = 7,    /* S = SIDs, D = channel */
    RMSG_CH_DEL = 8,    /* S = SIDs, D = channel */
    RMSG_CH_PUB = 9,    /* S = channel, D = message */
    RMSG_CH_SUB = 10,   /* gateway -> router: S = channel */
    RMSG_CH_UNSUB = 11, /* gateway -> router: S = channel */
    RMSG_INFO = 12,     /* backend -> router; reply: D = text */
    RMSG_SECRET = 13,   /* backend -> router: D = ROUTER_SECRET */
    /* Liveness of a gateway link (LINK_TIMEOUT). The router sends PING, the
     * gateway answers PONG with the same D: never the other way round, since
     * an old router closes on types it does not know and an old gateway
     * ignores them. */
    RMSG_PING = 14,
    RMSG_PONG = 15,
    /* Backend API v2. Commands (backend -> router -> gateway, no answer): */
    RMSG_BIND = 16,        /* S = SIDs, D = uid; also a gateway's report */
    RMSG_UNBIND = 17,      /* S = SIDs; also a gateway's report */
    RMSG_SEND_UID = 18,    /* S = uid list, D = message */
    RMSG_KICK_UID = 19,    /* S = uid list */
    RMSG_SESSION_SET = 20, /* S = one SID, D = data (empty clears) */
    RMSG_SEND_ALL_EX = 21, /* S = SIDs to exclude, D = message */
    RMSG_CH_PUB_EX = 22,   /* S = u8 n | channel (n) | SIDs to exclude, D = message */
    /* Queries (backend -> router; answered with the same type, S empty): */
    RMSG_IS_ONLINE = 23,   /* S = SIDs; answer D = one byte per SID, 1 online */
    RMSG_UID_COUNT = 24,   /* S = uid; answer D = u32 sessions */
    RMSG_UID_SIDS = 25,    /* S = uid; answer D = SIDs */
    RMSG_SID_UID = 26,     /* S = one SID; answer D = uid (empty: none) */
    RMSG_SESSION_GET = 27, /* S = one SID; answer D = u8 found | data */
    RMSG_CH_COUNT = 28,    /* S = channel; answer D = u32 members */
    RMSG_CH_MEMBERS = 29,  /* S = channel; answer D = repeated SID | u8 len | uid */
    RMSG_CH_SESSIONS = 30, /* S = channel; answer D = repeated SID | u32 len | data */
    RMSG_CHANNELS = 31,    /* answer D = repeated u8 len | name | u32 members */
    RMSG_ERROR = 32,       /* answer to a refused query: D = u16 type | text */
    /* Router <-> gateway, for the queries that need session data: */
    RMSG_GW_QUERY = 33,  /* router -> gateway: S = SIDs, D = u32 query id */
    RMSG_GW_ANSWER = 34, /* gateway -> router: D = u32 id | repeated SID | u32 len | data */
    /* gateway -> router, in answer to the v2 PING: D = u32 protocol version
     * (2). Only a link that said it gets types 16..34: a gateway from before
     * v2 echoes the PING like any other, and drops its link on those. */
    RMSG_HELLO = 35,
    RMSG_TYPE_MAX = RMSG_HELLO
};

enum rmsg_status {
    RMSG_OK = 0,
    RMSG_NEED_MORE = 1, /* not an error: fewer bytes than the message needs */
    /* A type above RMSG_TYPE_MAX (a newer peer's) whose D is within max_len:
     * m->type, slen and len are set, so a reader that wants to may skip
     * rmsg_size(m) bytes and carry on instead of dropping the link (rmsg_decode
     * returns it once the whole message is in, with *consumed set). Type 0 is
     * never valid: RMSG_ERR_TYPE. */
    RMSG_UNKNOWN = 2,
    RMSG_ERR_TYPE = -1,    /* unknown type */
    RMSG_ERR_LEN = -2,     /* len over the caller's maximum */
    RMSG_ERR_SIDS = -3,    /* S is a SID list but slen is not a multiple of 16 */
    RMSG_ERR_CHANNEL = -4, /* channel name empty or over 255 bytes */
    RMSG_ERR_AUTH = -5,    /* AUTH with D shorter than 8 bytes */
    RMSG_ERR_S = -6,       /* S not empty where the type has none */
    /* Content errors of v2 types (rmsg_validate): the message is whole and can be skipped. */
    RMSG_ERR_UID = -7,        /* uid empty or over 128 bytes */
    RMSG_ERR_UIDS = -8,       /* uid list empty, an entry of 0 or over 128 bytes, or cut short */
    RMSG_ERR_SID = -9,        /* S must be exactly one SID */
    RMSG_ERR_D = -10,         /* D has a size this type does not allow */
    RMSG_ERR_RECORDS = -11,   /* GW_ANSWER records cut short or with data over RMSG_MAX_SESSION */
    RMSG_ERR_LINK_QUERY = -12 /* (the router's) a query sent on a gateway link */
};

struct rmsg {
    uint16_t type;
    uint16_t slen;
    uint32_t len;
    const unsigned char *s; /* into the caller's bytes; NULL from rmsg_decode_header */
    const unsigned char *d;
};

/* Checks the header in buf[0..n). Returns RMSG_OK with m->type/slen/len set
 * (m->s, m->d NULL), RMSG_NEED_MORE if n < 8, or an RMSG_ERR_*. max_len bounds D,
 * and so does the type's own cap where it has one (AUTH, SECRET). */
int rmsg_decode_header(const void *buf, size_t n, uint32_t max_len, struct rmsg *m);

/* Decodes one whole message from buf[0..n). On RMSG_OK fills *m (s and d point
 * into buf) and *consumed = 8 + slen + len; otherwise as rmsg_decode_header, plus
 * RMSG_NEED_MORE while the body is incomplete. Once the body is in, it also
 * returns what rmsg_validate says (and RMSG_UNKNOWN): then *m and *consumed are
 * set as for RMSG_OK, so the reader may skip the message. On every other status
 * *consumed is left alone (a caller that sets it to 0 first can tell them apart). */
int rmsg_decode(const void *buf, size_t n, uint32_t max_len, struct rmsg *m, size_t *consumed);

/* Checks the shapes of a whole message's S and D (what the header alone cannot
 * tell for types 16..34; for types 1..15 it repeats the header's checks).
 * m->s must point at S; m->d is only read for GW_ANSWER (its records) and may be
 * NULL for every other type. RMSG_OK, or an RMSG_ERR_*. */
int rmsg_validate(const struct rmsg *m);

/* 1 for the query types (23..31), which are answered: with ERROR when refused. */
int rmsg_is_query(int type);

/* Writes the 8-byte header; the caller appends S and D (by reference if it likes). */
void rmsg_encode_header(unsigned char out[RMSG_HEADER_LEN], uint16_t type, uint16_t slen,
                        uint32_t len);

/* Whole message size for a decoded header. */
static inline size_t rmsg_size(const struct rmsg *m)
{
    return (size_t)RMSG_HEADER_LEN + m->slen + m->len;
}

/* Largest D the type allows (its own cap, else max_len). */
uint32_t rmsg_max_len(int type, uint32_t max_len);

const char *rmsg_type_name(int type); /* "SEND_MSG", or "?" */

/* ---- v2 fields ---- */

static inline uint16_t rmsg_get_u16(const unsigned char *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}
static inline uint32_t rmsg_get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline void rmsg_put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* Walks a uid list s[0..n) from *off (start at 0): returns 1 with the next uid
 * in *uid, *len and *off moved past it, 0 at the end, or RMSG_ERR_UIDS when the
 * entry at *off is malformed (length 0 or over 128, or past n). */
int rmsg_uids_next(const unsigned char *s, size_t n, size_t *off, const unsigned char **uid,
                   size_t *len);
/* RMSG_OK if s[0..n) is a valid uid list (at least one entry, every one valid). */
int rmsg_uids_check(const unsigned char *s, size_t n);

/* CH_PUB_EX's S, split: the channel and the SIDs to exclude. */
struct rmsg_ch_ex {
    const unsigned char *channel;
    size_t chlen;
    const unsigned char *sids;
    size_t nsids;
};
/* RMSG_OK with *out filled, or RMSG_ERR_CHANNEL / RMSG_ERR_SIDS. */
int rmsg_ch_ex_parse(const unsigned char *s, size_t slen, struct rmsg_ch_ex *out);

/* Walks `SID | u32 len | data` records in p[0..n) (a GW_ANSWER's D after the
 * id, or a CH_SESSIONS answer) from *off: 1 with the next record, 0 at the end,
 * RMSG_ERR_RECORDS when the record at *off is cut short or its data is over
 * RMSG_MAX_SESSION. */
int rmsg_records_next(const unsigned char *p, size_t n, size_t *off, const unsigned char **sid,
                      const unsigned char **data, uint32_t *len);

/* Answer pieces, written into the caller's buffer; each returns bytes written. */
/* A CH_MEMBERS record: SID | u8 uid len | uid (len <= RMSG_MAX_UID; 0 = unbound). */
size_t rmsg_encode_member(unsigned char out[RMSG_MEMBER_MAX], const unsigned char *sid,
                          const void *uid, size_t len);
/* A record head: SID | u32 len (the caller appends the len bytes of data). */
size_t rmsg_encode_record_head(unsigned char out[RMSG_RECORD_HEAD], const unsigned char *sid,
                               uint32_t len);
/* A CHANNELS record: u8 len | name | u32 members (len 1..255). */
size_t rmsg_encode_channel_count(unsigned char out[RMSG_CHANNEL_REC_MAX], const void *name,
                                 size_t len, uint32_t members);
/* A gateway's own publish (link.h: a reply's CH_PUB_EX or SEND_ALL_EX, S
 * given, D of dlen bytes to follow): the header and S into out, and for
 * CH_PUB_EX its channel in *ex (ex->channel NULL for SEND_ALL_EX). The bytes
 * written, or 0 when S is too long, dlen over a u32, or S not a CH_PUB_EX's. */
#define RMSG_PUBLISH_HEAD_MAX                                                                      \
    (RMSG_HEADER_LEN + 1 + RMSG_MAX_CHANNEL + RMSG_MAX_SIDS * RMSG_SID_LEN)
size_t rmsg_encode_publish_head(unsigned char out[RMSG_PUBLISH_HEAD_MAX], int type, const void *s,
                                size_t slen, size_t dlen, struct rmsg_ch_ex *ex);
/* A whole ERROR message (header + D = u16 type | text, the text cut at
 * RMSG_MAX_ERROR bytes). out needs RMSG_HEADER_LEN + 2 + RMSG_MAX_ERROR bytes. */
#define RMSG_ERROR_MSG_MAX (RMSG_HEADER_LEN + 2 + RMSG_MAX_ERROR)
size_t rmsg_encode_error(unsigned char out[RMSG_ERROR_MSG_MAX], uint16_t type, const char *text);

/* Writes p[0..n) into out as log-safe text: printable ASCII as is, a backslash
 * as "\\", anything else (control bytes, non-ASCII) as \xNN; cut short with
 * "..." when it does not fit. Returns out (always NUL-terminated, size > 0). */
char *rmsg_escape(const void *p, size_t n, char *out, size_t size);
const char *rmsg_strerror(int status);

#endif
