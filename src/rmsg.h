/* rmsg.h - router message codec (DESIGN §7): pure functions over bytes, no I/O.
 *
 * Every message, both directions:
 *   u16 type BE | u16 slen BE | u32 len BE | slen bytes S | len bytes D
 * All checks the decoder makes depend on the 8-byte header alone, so a reader can
 * reject a bad message before buffering (or allocating for) its body. */
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
    RMSG_TYPE_MAX = RMSG_PONG
};

enum rmsg_status {
    RMSG_OK = 0,
    RMSG_NEED_MORE = 1,    /* not an error: fewer bytes than the message needs */
    RMSG_ERR_TYPE = -1,    /* unknown type */
    RMSG_ERR_LEN = -2,     /* len over the caller's maximum */
    RMSG_ERR_SIDS = -3,    /* S is a SID list but slen is not a multiple of 16 */
    RMSG_ERR_CHANNEL = -4, /* channel name empty or over 255 bytes */
    RMSG_ERR_AUTH = -5,    /* AUTH with D shorter than 8 bytes */
    RMSG_ERR_S = -6        /* S not empty where the type has none (AUTH, SECRET, PING, PONG) */
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
 * RMSG_NEED_MORE while the body is incomplete. */
int rmsg_decode(const void *buf, size_t n, uint32_t max_len, struct rmsg *m, size_t *consumed);

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

/* Writes p[0..n) into out as log-safe text: printable ASCII as is, a backslash
 * as "\\", anything else (control bytes, non-ASCII) as \xNN; cut short with
 * "..." when it does not fit. Returns out (always NUL-terminated, size > 0). */
char *rmsg_escape(const void *p, size_t n, char *out, size_t size);
const char *rmsg_strerror(int status);

#endif
