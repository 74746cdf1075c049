/* rmsg.c - router message codec. Each type's S and D shapes live in one table,
 * so adding a type is one line here, never a new switch. Types 16..34 (backend
 * API v2) are framed on the header and checked on the body (rmsg_validate), so
 * a reader can refuse a bad one and keep the connection. */
#include "rmsg.h"

#include <string.h>

/* What a field holds, which decides how it is checked. The first five are
 * checked on the header (types 1..15); the rest only by rmsg_validate. */
enum rmsg_field {
    RMSG_F_ANY,     /* opaque bytes (message text, secret, or unused) */
    RMSG_F_NONE,    /* must be empty */
    RMSG_F_SIDS,    /* concatenated 16-byte SIDs */
    RMSG_F_CHANNEL, /* a channel name, 1..255 bytes */
    RMSG_F_AUTH,    /* u32 server id, u32 worker id, then an optional secret */
    RMSG_F_V2,      /* marker: the kinds below are body checks */
    RMSG_F_EMPTY,   /* must be empty */
    RMSG_F_SIDS2,   /* concatenated 16-byte SIDs */
    RMSG_F_SID,     /* exactly one SID */
    RMSG_F_CH2,     /* a channel name, 1..255 bytes */
    RMSG_F_UID,     /* 1..128 bytes */
    RMSG_F_UIDS,    /* u8 len | uid, repeated, at least once */
    RMSG_F_CH_EX,   /* u8 n | channel (n bytes) | SIDs */
    RMSG_F_SESSION, /* 0..RMSG_MAX_SESSION bytes */
    RMSG_F_QID,     /* u32 query id */
    RMSG_F_ERRMSG,  /* u16 type | text (up to RMSG_MAX_ERROR) */
    RMSG_F_RECORDS  /* u32 query id | repeated SID | u32 len | data */
};

#define V2_SMALL RMSG_MAX_REFUSED

/* max: the type's own framing cap on D (0: only the caller's max_len). For v2
 * types whose D is small it is RMSG_MAX_REFUSED: a D a little too long is read
 * and refused, one far too long is not read at all. */
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
    [RMSG_BIND] = {"BIND", RMSG_F_SIDS2, RMSG_F_UID, V2_SMALL},
    [RMSG_UNBIND] = {"UNBIND", RMSG_F_SIDS2, RMSG_F_EMPTY, V2_SMALL},
    [RMSG_SEND_UID] = {"SEND_UID", RMSG_F_UIDS, RMSG_F_ANY},
    [RMSG_KICK_UID] = {"KICK_UID", RMSG_F_UIDS, RMSG_F_EMPTY, V2_SMALL},
    [RMSG_SESSION_SET] = {"SESSION_SET", RMSG_F_SID, RMSG_F_SESSION, V2_SMALL},
    [RMSG_SEND_ALL_EX] = {"SEND_ALL_EX", RMSG_F_SIDS2, RMSG_F_ANY},
    [RMSG_CH_PUB_EX] = {"CH_PUB_EX", RMSG_F_CH_EX, RMSG_F_ANY},
    [RMSG_IS_ONLINE] = {"IS_ONLINE", RMSG_F_SIDS2, RMSG_F_EMPTY, V2_SMALL},
    [RMSG_UID_COUNT] = {"UID_COUNT", RMSG_F_UID, RMSG_F_EMPTY, V2_SMALL},
    [RMSG_UID_SIDS] = {"UID_SIDS", RMSG_F_UID, RMSG_F_EMPTY, V2_SMALL},
    [RMSG_SID_UID] = {"SID_UID", RMSG_F_SID, RMSG_F_EMPTY, V2_SMALL},
    [RMSG_SESSION_GET] = {"SESSION_GET", RMSG_F_SID, RMSG_F_EMPTY, V2_SMALL},
    [RMSG_CH_COUNT] = {"CH_COUNT", RMSG_F_CH2, RMSG_F_EMPTY, V2_SMALL},
    [RMSG_CH_MEMBERS] = {"CH_MEMBERS", RMSG_F_CH2, RMSG_F_EMPTY, V2_SMALL},
    [RMSG_CH_SESSIONS] = {"CH_SESSIONS", RMSG_F_CH2, RMSG_F_EMPTY, V2_SMALL},
    [RMSG_CHANNELS] = {"CHANNELS", RMSG_F_EMPTY, RMSG_F_EMPTY, V2_SMALL},
    [RMSG_ERROR] = {"ERROR", RMSG_F_EMPTY, RMSG_F_ERRMSG, V2_SMALL},
    [RMSG_GW_QUERY] = {"GW_QUERY", RMSG_F_SIDS2, RMSG_F_QID, V2_SMALL},
    [RMSG_GW_ANSWER] = {"GW_ANSWER", RMSG_F_EMPTY, RMSG_F_RECORDS},
    [RMSG_HELLO] = {"HELLO", RMSG_F_EMPTY, RMSG_F_QID, V2_SMALL},
};

/* Length-only checks: every kind but the ones whose content must be walked. */
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

/* Body checks of the v2 kinds; p is the field (NULL allowed where only its
 * length matters), s_field says whether it is S (for the error of "must be
 * empty"). */
static int rmsg_check_v2(int kind, const unsigned char *p, uint32_t n, int s_field)
{
    struct rmsg_ch_ex ex;

    switch (kind) {
    case RMSG_F_EMPTY:
        return n == 0 ? RMSG_OK : s_field ? RMSG_ERR_S : RMSG_ERR_D;
    case RMSG_F_SIDS2:
        return n % RMSG_SID_LEN == 0 ? RMSG_OK : RMSG_ERR_SIDS;
    case RMSG_F_SID:
        return n == RMSG_SID_LEN ? RMSG_OK : RMSG_ERR_SID;
    case RMSG_F_CH2:
        return n >= 1 && n <= RMSG_MAX_CHANNEL ? RMSG_OK : RMSG_ERR_CHANNEL;
    case RMSG_F_UID:
        return n >= 1 && n <= RMSG_MAX_UID ? RMSG_OK : RMSG_ERR_UID;
    case RMSG_F_UIDS:
        return rmsg_uids_check(p, n);
    case RMSG_F_CH_EX:
        return rmsg_ch_ex_parse(p, n, &ex);
    case RMSG_F_SESSION:
        return n <= RMSG_MAX_SESSION ? RMSG_OK : RMSG_ERR_D;
    case RMSG_F_QID:
        return n == RMSG_QID_LEN ? RMSG_OK : RMSG_ERR_D;
    case RMSG_F_ERRMSG:
        return n >= 2 && n <= 2 + RMSG_MAX_ERROR ? RMSG_OK : RMSG_ERR_D;
    case RMSG_F_RECORDS: {
        const unsigned char *sid, *data;
        uint32_t len;
        size_t off = 0;
        int rc;
        if (n < RMSG_QID_LEN)
            return RMSG_ERR_D;
        if (p == NULL)
            return RMSG_ERR_RECORDS;
        while ((rc = rmsg_records_next(p + RMSG_QID_LEN, n - RMSG_QID_LEN, &off, &sid, &data, &len))
               == 1)
            ;
        return rc == 0 ? RMSG_OK : rc;
    }
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
    m->type = rmsg_get_u16(p);
    m->slen = rmsg_get_u16(p + 2);
    m->len = rmsg_get_u32(p + 4);
    m->s = m->d = NULL;

    if (m->type == 0)
        return RMSG_ERR_TYPE;
    /* Bound len before anything else: it is what a reader would buffer. */
    if (m->len > rmsg_max_len(m->type, max_len))
        return RMSG_ERR_LEN;
    if (m->type > RMSG_TYPE_MAX)
        return RMSG_UNKNOWN;
    if ((rc = rmsg_check_field(rmsg_types[m->type].s, m->slen)) != RMSG_OK)
        return rc;
    return rmsg_check_field(rmsg_types[m->type].d, m->len);
}

int rmsg_validate(const struct rmsg *m)
{
    int rc;

    if (m->type == 0 || m->type > RMSG_TYPE_MAX)
        return RMSG_ERR_TYPE;
    if (rmsg_types[m->type].s < RMSG_F_V2) {
        if ((rc = rmsg_check_field(rmsg_types[m->type].s, m->slen)) != RMSG_OK)
            return rc;
        return rmsg_check_field(rmsg_types[m->type].d, m->len);
    }
    if ((rc = rmsg_check_v2(rmsg_types[m->type].s, m->s, m->slen, 1)) != RMSG_OK)
        return rc;
    return rmsg_check_v2(rmsg_types[m->type].d, m->d, m->len, 0);
}

int rmsg_is_query(int type)
{
    return type >= RMSG_IS_ONLINE && type <= RMSG_CHANNELS;
}

int rmsg_decode(const void *buf, size_t n, uint32_t max_len, struct rmsg *m, size_t *consumed)
{
    const unsigned char *p = buf;
    int rc = rmsg_decode_header(buf, n, max_len, m);

    if (rc != RMSG_OK && rc != RMSG_UNKNOWN)
        return rc;
    if (n - RMSG_HEADER_LEN < (size_t)m->slen + m->len)
        return RMSG_NEED_MORE;
    m->s = p + RMSG_HEADER_LEN;
    m->d = m->s + m->slen;
    *consumed = rmsg_size(m);
    return rc == RMSG_UNKNOWN ? rc : rmsg_validate(m);
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
    case RMSG_UNKNOWN:
        return "unknown message type";
    case RMSG_ERR_UID:
        return "uid empty or over 128 bytes";
    case RMSG_ERR_UIDS:
        return "bad uid list (empty, an entry of 0 or over 128 bytes, or cut short)";
    case RMSG_ERR_SID:
        return "S must be exactly one SID";
    case RMSG_ERR_D:
        return "D has a size this type does not allow";
    case RMSG_ERR_RECORDS:
        return "records cut short or with data over the session maximum";
    case RMSG_ERR_LINK_QUERY:
        return "queries are for backends, not gateway links";
    default:
        return "unknown error";
    }
}

/* ---- v2 fields ---- */

int rmsg_uids_next(const unsigned char *s, size_t n, size_t *off, const unsigned char **uid,
                   size_t *len)
{
    size_t o = *off, l;

    if (o >= n)
        return 0;
    l = s[o];
    if (l == 0 || l > RMSG_MAX_UID || l > n - o - 1)
        return RMSG_ERR_UIDS;
    *uid = s + o + 1;
    *len = l;
    *off = o + 1 + l;
    return 1;
}

int rmsg_uids_check(const unsigned char *s, size_t n)
{
    const unsigned char *uid;
    size_t off = 0, len;
    int rc;

    if (n == 0 || s == NULL)
        return RMSG_ERR_UIDS;
    while ((rc = rmsg_uids_next(s, n, &off, &uid, &len)) == 1)
        ;
    return rc == 0 ? RMSG_OK : rc;
}

int rmsg_ch_ex_parse(const unsigned char *s, size_t slen, struct rmsg_ch_ex *out)
{
    size_t n;

    if (slen < 2 || s == NULL)
        return RMSG_ERR_CHANNEL;
    n = s[0];
    if (n == 0 || n > slen - 1)
        return RMSG_ERR_CHANNEL;
    if ((slen - 1 - n) % RMSG_SID_LEN != 0)
        return RMSG_ERR_SIDS;
    out->channel = s + 1;
    out->chlen = n;
    out->sids = s + 1 + n;
    out->nsids = (slen - 1 - n) / RMSG_SID_LEN;
    return RMSG_OK;
}

int rmsg_records_next(const unsigned char *p, size_t n, size_t *off, const unsigned char **sid,
                      const unsigned char **data, uint32_t *len)
{
    size_t o = *off;
    uint32_t l;

    if (o >= n)
        return 0;
    if (n - o < RMSG_RECORD_HEAD)
        return RMSG_ERR_RECORDS;
    l = rmsg_get_u32(p + o + RMSG_SID_LEN);
    if (l > RMSG_MAX_SESSION || l > n - o - RMSG_RECORD_HEAD)
        return RMSG_ERR_RECORDS;
    *sid = p + o;
    *data = p + o + RMSG_RECORD_HEAD;
    *len = l;
    *off = o + RMSG_RECORD_HEAD + l;
    return 1;
}

size_t rmsg_encode_member(unsigned char out[RMSG_MEMBER_MAX], const unsigned char *sid,
                          const void *uid, size_t len)
{
    if (len > RMSG_MAX_UID)
        len = 0; /* cannot be bound to it: the tables refuse such a uid */
    memcpy(out, sid, RMSG_SID_LEN);
    out[RMSG_SID_LEN] = (unsigned char)len;
    if (len > 0)
        memcpy(out + RMSG_SID_LEN + 1, uid, len);
    return RMSG_SID_LEN + 1 + len;
}

size_t rmsg_encode_record_head(unsigned char out[RMSG_RECORD_HEAD], const unsigned char *sid,
                               uint32_t len)
{
    memcpy(out, sid, RMSG_SID_LEN);
    rmsg_put_u32(out + RMSG_SID_LEN, len);
    return RMSG_RECORD_HEAD;
}

size_t rmsg_encode_channel_count(unsigned char out[RMSG_CHANNEL_REC_MAX], const void *name,
                                 size_t len, uint32_t members)
{
    if (len > RMSG_MAX_CHANNEL)
        len = RMSG_MAX_CHANNEL;
    out[0] = (unsigned char)len;
    memcpy(out + 1, name, len);
    rmsg_put_u32(out + 1 + len, members);
    return 1 + len + 4;
}

size_t rmsg_encode_publish_head(unsigned char out[RMSG_PUBLISH_HEAD_MAX], int type, const void *s,
                                size_t slen, size_t dlen, struct rmsg_ch_ex *ex)
{
    *ex = (struct rmsg_ch_ex){NULL, 0, NULL, 0};
    if (slen > RMSG_PUBLISH_HEAD_MAX - RMSG_HEADER_LEN || dlen > UINT32_MAX)
        return 0;
    if (type == RMSG_CH_PUB_EX && rmsg_ch_ex_parse(s, slen, ex) != RMSG_OK)
        return 0;
    rmsg_encode_header(out, (uint16_t)type, (uint16_t)slen, (uint32_t)dlen);
    memcpy(out + RMSG_HEADER_LEN, s, slen);
    return RMSG_HEADER_LEN + slen;
}

size_t rmsg_encode_error(unsigned char out[RMSG_ERROR_MSG_MAX], uint16_t type, const char *text)
{
    size_t n = strlen(text);

    if (n > RMSG_MAX_ERROR)
        n = RMSG_MAX_ERROR;
    rmsg_encode_header(out, RMSG_ERROR, 0, (uint32_t)(2 + n));
    out[RMSG_HEADER_LEN] = (unsigned char)(type >> 8);
    out[RMSG_HEADER_LEN + 1] = (unsigned char)type;
    memcpy(out + RMSG_HEADER_LEN + 2, text, n);
    return RMSG_HEADER_LEN + 2 + n;
}
