/* rmsg.c - router message codec. Each type's S and D shapes live in one table,
 * so adding a type (numbers above 15) is one line here, never a new switch. */
#include "rmsg.h"

#include <string.h>

/* What a field holds, which decides how it is checked. */
enum rmsg_field {
    RMSG_F_ANY,     /* opaque bytes (message text, secret, or unused) */
    RMSG_F_NONE,    /* must be empty */
    RMSG_F_SIDS,    /* concatenated 16-byte SIDs */
    RMSG_F_CHANNEL, /* a channel name, 1..255 bytes */
    RMSG_F_AUTH     /* u32 server id, u32 worker id, then an optional secret */
};

/* max: the type's own cap on D (0: only the caller's max_len). */
static const struct {
    const char *name;
    unsigned char s, d;
    uint32_t max;
} rmsg_types[RMSG_TYPE_MAX + 1] = {
    [RMSG_AUTH] = {"AUTH", RMSG_F_NONE, RMSG_F_AUTH, RMSG_AUTH_LEN + RMSG_MAX_SECRET},
    [RMSG_CONN] = {"CONN", RMSG_F_SIDS, RMSG_F_ANY},
    [RMSG_CLOSE] = {"CLOSE", RMSG_F_SIDS, RMSG_F_ANY},
    [RMSG_KICK] = {"KICK", RMSG_F_SIDS, RMSG_F_ANY},
    [RMSG_SEND_MSG] = {"SEND_MSG", RMSG_F_SIDS, RMSG_F_ANY},
    [RMSG_SEND_ALL] = {"SEND_ALL", RMSG_F_ANY, RMSG_F_ANY},
    [RMSG_CH_ADD] = {"CH_ADD", RMSG_F_SIDS, RMSG_F_CHANNEL},
    [RMSG_CH_DEL] = {"CH_DEL", RMSG_F_SIDS, RMSG_F_CHANNEL},
    [RMSG_CH_PUB] = {"CH_PUB", RMSG_F_CHANNEL, RMSG_F_ANY},
    [RMSG_CH_SUB] = {"CH_SUB", RMSG_F_CHANNEL, RMSG_F_ANY},
    [RMSG_CH_UNSUB] = {"CH_UNSUB", RMSG_F_CHANNEL, RMSG_F_ANY},
    [RMSG_INFO] = {"INFO", RMSG_F_ANY, RMSG_F_ANY},
    [RMSG_SECRET] = {"SECRET", RMSG_F_NONE, RMSG_F_ANY, RMSG_MAX_SECRET},
    [RMSG_PING] = {"PING", RMSG_F_NONE, RMSG_F_ANY, RMSG_MAX_PING},
    [RMSG_PONG] = {"PONG", RMSG_F_NONE, RMSG_F_ANY, RMSG_MAX_PING},
};

static int rmsg_check_field(int kind, uint32_t n)
{
    switch (kind) {
    case RMSG_F_NONE:
        return n == 0 ? RMSG_OK : RMSG_ERR_S;
    case RMSG_F_SIDS:
        return n % RMSG_SID_LEN == 0 ? RMSG_OK : RMSG_ERR_SIDS;
    case RMSG_F_CHANNEL:
        return n >= 1 && n <= RMSG_MAX_CHANNEL ? RMSG_OK : RMSG_ERR_CHANNEL;
    case RMSG_F_AUTH:
        return n >= RMSG_AUTH_LEN ? RMSG_OK : RMSG_ERR_AUTH;
    default:
        return RMSG_OK;
    }
}

int rmsg_decode_header(const void *buf, size_t n, uint32_t max_len, struct rmsg *m)
{
    const unsigned char *p = buf;
    int rc;

    if (n < RMSG_HEADER_LEN)
        return RMSG_NEED_MORE;
    m->type = (uint16_t)(p[0] << 8 | p[1]);
    m->slen = (uint16_t)(p[2] << 8 | p[3]);
    m->len = (uint32_t)p[4] << 24 | (uint32_t)p[5] << 16 | (uint32_t)p[6] << 8 | p[7];
    m->s = m->d = NULL;

    if (m->type == 0 || m->type > RMSG_TYPE_MAX)
        return RMSG_ERR_TYPE;
    /* Bound len before anything else: it is what a reader would buffer. */
    if (m->len > rmsg_max_len(m->type, max_len))
        return RMSG_ERR_LEN;
    if ((rc = rmsg_check_field(rmsg_types[m->type].s, m->slen)) != RMSG_OK)
        return rc;
    return rmsg_check_field(rmsg_types[m->type].d, m->len);
}

int rmsg_decode(const void *buf, size_t n, uint32_t max_len, struct rmsg *m, size_t *consumed)
{
    const unsigned char *p = buf;
    int rc = rmsg_decode_header(buf, n, max_len, m);

    if (rc != RMSG_OK)
        return rc;
    if (n - RMSG_HEADER_LEN < (size_t)m->slen + m->len)
        return RMSG_NEED_MORE;
    m->s = p + RMSG_HEADER_LEN;
    m->d = m->s + m->slen;
    *consumed = rmsg_size(m);
    return RMSG_OK;
}

void rmsg_encode_header(unsigned char out[RMSG_HEADER_LEN], uint16_t type, uint16_t slen,
                        uint32_t len)
{
    out[0] = (unsigned char)(type >> 8);
    out[1] = (unsigned char)type;
    out[2] = (unsigned char)(slen >> 8);
    out[3] = (unsigned char)slen;
    out[4] = (unsigned char)(len >> 24);
    out[5] = (unsigned char)(len >> 16);
    out[6] = (unsigned char)(len >> 8);
    out[7] = (unsigned char)len;
}

uint32_t rmsg_max_len(int type, uint32_t max_len)
{
    if (type <= 0 || type > RMSG_TYPE_MAX || rmsg_types[type].max == 0)
        return max_len;
    return rmsg_types[type].max < max_len ? rmsg_types[type].max : max_len;
}

const char *rmsg_type_name(int type)
{
    if (type <= 0 || type > RMSG_TYPE_MAX)
        return "?";
    return rmsg_types[type].name;
}

static size_t rmsg_escape_len(unsigned char c)
{
    return c == '\\' ? 2 : (c >= 0x20 && c < 0x7f) ? 1 : 4;
}

char *rmsg_escape(const void *p, size_t n, char *out, size_t size)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *b = p;
    size_t o = 0, total = 0, room = size - 1;

    for (size_t i = 0; i < n; i++)
        total += rmsg_escape_len(b[i]);
    /* Cut short: keep room for the "..." that says so. */
    if (total > room)
        room = room >= 3 ? room - 3 : 0;
    for (size_t i = 0; i < n && o + rmsg_escape_len(b[i]) <= room; i++) {
        unsigned char c = b[i];
        if (c == '\\') {
            out[o++] = '\\';
            out[o++] = '\\';
        } else if (rmsg_escape_len(c) == 1) {
            out[o++] = (char)c;
        } else {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    if (total > size - 1 && size - 1 >= 3) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
    return out;
}

const char *rmsg_strerror(int status)
{
    switch (status) {
    case RMSG_OK:
        return "ok";
    case RMSG_NEED_MORE:
        return "incomplete message";
    case RMSG_ERR_TYPE:
        return "unknown message type";
    case RMSG_ERR_LEN:
        return "message length over the limit";
    case RMSG_ERR_SIDS:
        return "SID list length not a multiple of 16";
    case RMSG_ERR_CHANNEL:
        return "channel name empty or over 255 bytes";
    case RMSG_ERR_AUTH:
        return "AUTH shorter than 8 bytes";
    case RMSG_ERR_S:
        return "S must be empty for this type";
    default:
        return "unknown error";
    }
}
