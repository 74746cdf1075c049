/* fuzz_rmsg.c - libFuzzer target for the router message codec: decode a stream
 * of messages as the router does, and check what the decoder promises (pointers
 * inside the input, consumed = 8 + slen + len, header re-encodes to the same
 * bytes, every accepted message obeys the per-type rules). v2 types (16..34)
 * are also checked on their body: a message refused there is whole (consumed
 * set, the stream goes on), and an accepted one has the shapes its type says.
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc tests/fuzz/fuzz_rmsg.c src/rmsg.c */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rmsg.h"

#define FUZZ_MAX_LEN 4096

/* Walks what a v2 message carries with the codec's own helpers, and checks
 * the shapes rmsg_validate promised. 0 when they hold. */
static int fuzz_check_v2(const struct rmsg *m)
{
    const unsigned char *uid, *sid, *d;
    size_t off = 0, ulen, n = 0;
    uint32_t len;
    struct rmsg_ch_ex ex;
    int rc;

    switch (m->type) {
    case RMSG_BIND:
        return m->slen % RMSG_SID_LEN || m->len < 1 || m->len > RMSG_MAX_UID;
    case RMSG_UNBIND:
    case RMSG_IS_ONLINE:
        return m->slen % RMSG_SID_LEN || m->len != 0;
    case RMSG_SEND_UID:
    case RMSG_KICK_UID:
        while ((rc = rmsg_uids_next(m->s, m->slen, &off, &uid, &ulen)) == 1) {
            if (ulen < 1 || ulen > RMSG_MAX_UID || uid + ulen > m->s + m->slen)
                return 1;
            n++;
        }
        return rc != 0 || n == 0 || off != m->slen || (m->type == RMSG_KICK_UID && m->len);
    case RMSG_SESSION_SET:
        return m->slen != RMSG_SID_LEN || m->len > RMSG_MAX_SESSION;
    case RMSG_SEND_ALL_EX:
        return m->slen % RMSG_SID_LEN;
    case RMSG_CH_PUB_EX:
        if (rmsg_ch_ex_parse(m->s, m->slen, &ex) != RMSG_OK)
            return 1;
        return ex.chlen < 1 || 1 + ex.chlen + ex.nsids * RMSG_SID_LEN != m->slen;
    case RMSG_UID_COUNT:
    case RMSG_UID_SIDS:
        return m->slen < 1 || m->slen > RMSG_MAX_UID || m->len;
    case RMSG_SID_UID:
    case RMSG_SESSION_GET:
        return m->slen != RMSG_SID_LEN || m->len;
    case RMSG_CH_COUNT:
    case RMSG_CH_MEMBERS:
    case RMSG_CH_SESSIONS:
        return m->slen < 1 || m->slen > RMSG_MAX_CHANNEL || m->len;
    case RMSG_CHANNELS:
        return m->slen || m->len;
    case RMSG_ERROR:
        return m->slen || m->len < 2 || m->len > 2 + RMSG_MAX_ERROR;
    case RMSG_GW_QUERY:
        return m->slen % RMSG_SID_LEN || m->len != RMSG_QID_LEN;
    case RMSG_GW_ANSWER:
        if (m->slen || m->len < RMSG_QID_LEN)
            return 1;
        while ((rc = rmsg_records_next(m->d + 4, m->len - 4, &off, &sid, &d, &len)) == 1) {
            if (len > RMSG_MAX_SESSION || d + len > m->d + m->len)
                return 1;
        }
        return rc != 0 || off != m->len - 4;
    default:
        return 0;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;

    while (off < size) {
        struct rmsg m, h;
        size_t used = 0;
        unsigned char hdr[RMSG_HEADER_LEN];
        int rc = rmsg_decode(data + off, size - off, FUZZ_MAX_LEN, &m, &used);
        int rch = rmsg_decode_header(data + off, size - off, FUZZ_MAX_LEN, &h);

        if (used != 0) {
            /* A whole message: framed by the header; any refusal is the body's. */
            if ((rch != RMSG_OK && rch != RMSG_UNKNOWN) || used != rmsg_size(&m)
                || used > size - off)
                abort();
            if (rc != RMSG_OK && rc != RMSG_UNKNOWN) {
                if (rc >= 0 || rc != rmsg_validate(&m) || m.type < 16)
                    abort(); /* old types are refused on the header alone */
                off += used;
                continue;
            }
            if (rc == RMSG_UNKNOWN) {
                if (m.type <= RMSG_TYPE_MAX || rch != RMSG_UNKNOWN)
                    abort();
                off += used;
                continue;
            }
        } else if (rc < 0 && rc != rch) {
            abort(); /* framing errors come from the header alone */
        }
        if (rc != RMSG_OK)
            break;
        if (rch != RMSG_OK || used != rmsg_size(&m) || used > size - off)
            abort();
        if (m.s != data + off + RMSG_HEADER_LEN || m.d != m.s + m.slen)
            abort();
        if (m.type < 1 || m.type > RMSG_TYPE_MAX || m.len > FUZZ_MAX_LEN)
            abort();
        switch (m.type) {
        case RMSG_CONN:
        case RMSG_CLOSE:
        case RMSG_KICK:
        case RMSG_SEND_MSG:
            if (m.slen % RMSG_SID_LEN)
                abort();
            break;
        case RMSG_CH_ADD:
        case RMSG_CH_DEL:
            if (m.slen % RMSG_SID_LEN || m.len == 0 || m.len > RMSG_MAX_CHANNEL)
                abort();
            break;
        case RMSG_CH_PUB:
        case RMSG_CH_SUB:
        case RMSG_CH_UNSUB:
            if (m.slen == 0 || m.slen > RMSG_MAX_CHANNEL)
                abort();
            break;
        case RMSG_AUTH:
            if (m.len < RMSG_AUTH_LEN || m.len > RMSG_AUTH_LEN + RMSG_MAX_SECRET || m.slen != 0)
                abort();
            break;
        case RMSG_SECRET:
            if (m.len > RMSG_MAX_SECRET || m.slen != 0)
                abort();
            break;
        case RMSG_PING:
        case RMSG_PONG:
            if (m.len > RMSG_MAX_PING || m.slen != 0)
                abort();
            break;
        }
        if (fuzz_check_v2(&m) != 0)
            abort();
        {
            /* Escaping any S for a log line stays inside the buffer and ends. */
            char esc[RMSG_ESCAPE_MAX];
            size_t n = m.slen > RMSG_MAX_CHANNEL ? RMSG_MAX_CHANNEL : m.slen;
            if (strlen(rmsg_escape(m.s, n, esc, sizeof(esc))) >= sizeof(esc))
                abort();
        }
        rmsg_encode_header(hdr, m.type, m.slen, m.len);
        if (memcmp(hdr, data + off, RMSG_HEADER_LEN) != 0)
            abort();
        off += used;
    }
    return 0;
}
