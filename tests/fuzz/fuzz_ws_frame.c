/* fuzz_ws_frame.c - libFuzzer target for the WebSocket frame side of ws.c: frame
 * headers, unmasking, fragmentation state, close payloads and UTF-8.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc \
 *       tests/fuzz/fuzz_ws_frame.c src/ws.c -lcrypto -o /tmp/fuzz_ws_frame
 *   cp -r tests/fuzz/corpus/fuzz_ws_frame /tmp/c && /tmp/fuzz_ws_frame /tmp/c
 *
 * Input: one flags byte (bit 0: parse as the server, bit 1: small limits), then a
 * stream of frames. Besides memory errors it checks properties: a header that
 * parses is also rebuilt byte for byte by the builders (when minimally encoded),
 * every shorter prefix of it is "need more", unmasking in two pieces equals
 * unmasking at once, and the incremental UTF-8 validator agrees with a plain
 * reference decoder however the bytes are split. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

/* Reference: decode every code point and apply the rules directly. */
static int fuzz_ref_utf8_valid(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint32_t c = p[i], min;
        size_t len;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            len = 2, c &= 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3, c &= 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4, c &= 0x07, min = 0x10000;
        } else {
            return 0;
        }
        if (i + len > n)
            return 0;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return 0;
            c = c << 6 | (p[i + k] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
            return 0;
        i += len;
    }
    return 1;
}

static void fuzz_utf8(const uint8_t *p, size_t n, size_t cut)
{
    struct ws_utf8 whole = {0}, split = {0}, bytes = {0};
    int r = ws_utf8_feed(&whole, p, n);
    CHECK((r == WS_UTF8_ACCEPT) == fuzz_ref_utf8_valid(p, n));

    if (cut > n)
        cut = n;
    int a = ws_utf8_feed(&split, p, cut);
    int b = ws_utf8_feed(&split, p + cut, n - cut);
    CHECK(b == r);
    CHECK(a != WS_UTF8_INVALID || r == WS_UTF8_INVALID);

    int c = WS_UTF8_ACCEPT;
    for (size_t i = 0; i < n; i++)
        c = ws_utf8_feed(&bytes, p + i, 1);
    CHECK(c == r || (n == 0 && r == WS_UTF8_ACCEPT));
}

static void fuzz_close(const uint8_t *p, size_t n)
{
    int code;
    const uint8_t *reason;
    size_t rlen;
    int err = ws_close_parse(p, n, &code, &reason, &rlen);
    CHECK(err == 0 || err == WS_CLOSE_PROTOCOL || err == WS_CLOSE_INVALID_DATA);
    if (err != 0 || code == WS_CLOSE_NO_STATUS)
        return;
    /* What we accepted, we can echo: rebuild it and read it back. */
    uint8_t out[WS_MAX_CONTROL_PAYLOAD];
    size_t m = ws_close_payload(out, code, (const char *)reason, rlen);
    CHECK(m == n);
    CHECK(memcmp(out, p, n) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int from_client = data[0] & 1;
    uint64_t max_payload = (data[0] & 2) ? 300 : UINT64_MAX;
    uint64_t max_message = (data[0] & 2) ? 500 : 1 << 20;

    uint8_t *buf = malloc(size);
    CHECK(buf != NULL);
    memcpy(buf, data, size);

    struct ws_message msg;
    ws_message_init(&msg);
    size_t off = 1;
    while (off < size) {
        struct ws_frame f;
        const uint8_t *p = buf + off;
        size_t avail = size - off;
        int r = ws_parse_frame(p, avail, from_client, max_payload, &f);
        if (r == WS_AGAIN) {
            CHECK(avail < WS_MAX_FRAME_HEADER);
            break;
        }
        if (r == WS_ERROR) {
            CHECK(f.close_code == WS_CLOSE_PROTOCOL || f.close_code == WS_CLOSE_TOO_BIG);
            break;
        }
        CHECK(r >= 2 && r <= WS_MAX_FRAME_HEADER && (size_t)r == f.header_len);
        CHECK(f.masked == from_client);
        CHECK(f.payload_len <= max_payload);
        CHECK(!ws_opcode_is_control(f.opcode) || (f.fin && f.payload_len <= 125));
        for (int i = 0; i < r; i++) {
            struct ws_frame g;
            CHECK(ws_parse_frame(p, (size_t)i, from_client, max_payload, &g) == WS_AGAIN);
        }

        uint8_t hdr[WS_MAX_FRAME_HEADER];
        size_t hn = from_client
                        ? ws_client_frame_header(hdr, f.opcode, f.fin, f.payload_len, f.mask)
                        : ws_frame_header(hdr, f.opcode, f.fin, f.payload_len);
        struct ws_frame g;
        CHECK(ws_parse_frame(hdr, hn, from_client, max_payload, &g) == (int)hn);
        CHECK(g.fin == f.fin && g.opcode == f.opcode && g.payload_len == f.payload_len
              && memcmp(g.mask, f.mask, 4) == 0);
        if (hn == (size_t)r)
            CHECK(memcmp(hdr, p, hn) == 0);
        CHECK(hn <= (size_t)r);

        if (f.payload_len > avail - (size_t)r)
            break;
        uint8_t *pl = buf + off + (size_t)r;
        size_t plen = (size_t)f.payload_len;
        if (f.masked) {
            uint8_t *copy = malloc(plen ? plen : 1);
            CHECK(copy != NULL);
            memcpy(copy, pl, plen);
            size_t cut = plen ? p[0] % plen : 0;
            ws_unmask(pl, cut, f.mask, 0);
            ws_unmask(pl + cut, plen - cut, f.mask, cut);
            ws_unmask(copy, plen, f.mask, 0);
            CHECK(memcmp(copy, pl, plen) == 0);
            free(copy);
        }
        fuzz_utf8(pl, plen, plen ? f.mask[1] % (plen + 1) : 0);

        if (f.opcode == WS_OP_CLOSE) {
            fuzz_close(pl, plen);
        } else if (!ws_opcode_is_control(f.opcode)) {
            int code = ws_message_frame(&msg, &f, max_message);
            if (code != 0) {
                CHECK(code == WS_CLOSE_PROTOCOL || code == WS_CLOSE_TOO_BIG);
                break;
            }
            CHECK(msg.size <= max_message);
            size_t cut = plen / 2;
            code = ws_message_data(&msg, pl, cut);
            if (code == 0)
                code = ws_message_data(&msg, pl + cut, plen - cut);
            if (code == 0 && f.fin)
                code = ws_message_end(&msg);
            if (code != 0) {
                CHECK(code == WS_CLOSE_INVALID_DATA);
                break;
            }
        }
        off += (size_t)r + plen;
    }
    free(buf);
    return 0;
}
