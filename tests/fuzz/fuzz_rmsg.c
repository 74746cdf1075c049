/* fuzz_rmsg.c - libFuzzer target for the router message codec: decode a stream
 * of messages as the router does, and check what the decoder promises (pointers
 * inside the input, consumed = 8 + slen + len, header re-encodes to the same
 * bytes, every accepted message obeys the per-type rules).
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc tests/fuzz/fuzz_rmsg.c src/rmsg.c */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rmsg.h"

#define FUZZ_MAX_LEN 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;

    while (off < size) {
        struct rmsg m, h;
        size_t used = 0;
        unsigned char hdr[RMSG_HEADER_LEN];
        int rc = rmsg_decode(data + off, size - off, FUZZ_MAX_LEN, &m, &used);
        int rch = rmsg_decode_header(data + off, size - off, FUZZ_MAX_LEN, &h);

        if (rc < 0 && rc != rch)
            abort(); /* errors come from the header alone */
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
