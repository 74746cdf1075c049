/* test_ws.c - RFC 6455 codec: handshake, frames, fragmentation, UTF-8, close codes.
 * Expected bytes come from the RFC's own examples or are written out by hand. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws.h"

/* ---- handshake ---- */

/* RFC 6455 §1.3, with a query string added. */
static const char rfc_request[] = "GET /chat?room=1&t=x HTTP/1.1\r\n"
                                  "Host: server.example.com\r\n"
                                  "Upgrade: websocket\r\n"
                                  "Connection: Upgrade\r\n"
                                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                  "Origin: http://example.com\r\n"
                                  "Sec-WebSocket-Protocol: chat, superchat\r\n"
                                  "Sec-WebSocket-Version: 13\r\n"
                                  "\r\n";

static int str_is(struct ws_str s, const char *want)
{
    return s.p != NULL && s.len == strlen(want) && memcmp(s.p, want, s.len) == 0;
}

/* Parses a whole request and returns the verdict, or the parser's error. */
static int verdict_of(const char *text)
{
    struct ws_request req;
    long n = ws_parse_request(text, strlen(text), 0, &req);
    if (n < 0)
        return (int)n;
    assert_int_equal(n, strlen(text));
    return ws_check_request(&req);
}

/* The RFC request with one header line replaced (or dropped when repl is ""). */
static const char *rfc_with(const char *header, const char *repl)
{
    static char buf[4096];
    const char *at = strstr(rfc_request, header);
    assert_non_null(at);
    const char *eol = strstr(at, "\r\n") + 2;
    snprintf(buf, sizeof(buf), "%.*s%s%s", (int)(at - rfc_request), rfc_request, repl, eol);
    return buf;
}

static void test_accept_key_rfc(void **state)
{
    (void)state;
    char out[WS_ACCEPT_LEN + 1];
    assert_int_equal(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", 24, out), 0);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    char longkey[65] = {0};
    memset(longkey, 'A', 64);
    assert_int_equal(ws_accept_key(longkey, 65, out), -1);
}

static void test_handshake_rfc_example(void **state)
{
    (void)state;
    struct ws_request req;
    long n = ws_parse_request(rfc_request, strlen(rfc_request), 0, &req);
    assert_int_equal(n, strlen(rfc_request));
    assert_true(str_is(req.method, "GET"));
    assert_true(str_is(req.target, "/chat?room=1&t=x"));
    assert_true(str_is(req.path, "/chat"));
    assert_true(str_is(req.query, "room=1&t=x"));
    assert_int_equal(req.minor_version, 1);
    assert_int_equal(req.num_headers, 7);
    assert_true(str_is(req.headers[0].name, "Host"));
    assert_true(str_is(req.headers[0].value, "server.example.com"));
    assert_true(str_is(req.headers[6].name, "Sec-WebSocket-Version"));
    assert_true(str_is(req.headers[6].value, "13"));
    assert_true(str_is(req.origin, "http://example.com"));
    assert_true(str_is(req.protocol, "chat, superchat"));
    assert_int_equal(ws_check_request(&req), WS_HS_UPGRADE);

    /* The client's order wins: "chat" is offered first. */
    char *const supported[] = {"superchat", "chat", NULL};
    int k = ws_select_subprotocol(req.protocol.p, req.protocol.len, supported);
    assert_int_equal(k, 1);

    char out[512];
    long len = ws_build_accept(out, sizeof(out), &req, supported[k]);
    const char *want = "HTTP/1.1 101 Switching Protocols\r\n"
                       "Upgrade: websocket\r\n"
                       "Connection: Upgrade\r\n"
                       "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                       "Sec-WebSocket-Protocol: chat\r\n"
                       "\r\n";
    assert_int_equal(len, strlen(want));
    assert_memory_equal(out, want, strlen(want));

    len = ws_build_accept(out, sizeof(out), &req, NULL);
    assert_true(len > 0);
    assert_null(strstr(out, "Sec-WebSocket-Protocol"));
    assert_int_equal(ws_build_accept(out, 50, &req, NULL), -1);
}

static void test_handshake_no_query_and_trailing_bytes(void **state)
{
    (void)state;
    const char *text = "GET /ws HTTP/1.1\r\nHost: h\r\n\r\n\x81\x85";
    struct ws_request req;
    long n = ws_parse_request(text, strlen(text), 0, &req);
    assert_int_equal(n, strlen(text) - 2);
    assert_true(str_is(req.path, "/ws"));
    assert_non_null(req.query.p);
    assert_int_equal(req.query.len, 0);
    assert_int_equal(ws_check_request(&req), WS_HS_PLAIN);
}

static void test_handshake_split_every_byte(void **state)
{
    (void)state;
    size_t total = strlen(rfc_request);
    struct ws_request req;
    size_t last = 0;
    for (size_t i = 0; i < total; i++) {
        /* Both as a resumed scan and from scratch. */
        assert_int_equal(ws_parse_request(rfc_request, i, last, &req), WS_AGAIN);
        assert_int_equal(ws_parse_request(rfc_request, i, 0, &req), WS_AGAIN);
        last = i;
    }
    assert_int_equal(ws_parse_request(rfc_request, total, last, &req), (long)total);
    assert_int_equal(ws_check_request(&req), WS_HS_UPGRADE);
}

static void test_handshake_errors(void **state)
{
    (void)state;
    /* missing key */
    assert_int_equal(verdict_of(rfc_with("Sec-WebSocket-Key", "")), WS_HS_BAD_REQUEST);
    /* bad keys: too short, no padding, 15 bytes, bad character, 17 bytes */
    static const char *const bad_keys[] = {
        "Sec-WebSocket-Key: abc\r\n",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ\r\n",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZ===\r\n",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j*Q==\r\n",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==AA==\r\n",
        "Sec-WebSocket-Key: \r\n",
    };
    for (size_t i = 0; i < sizeof(bad_keys) / sizeof(bad_keys[0]); i++)
        assert_int_equal(verdict_of(rfc_with("Sec-WebSocket-Key", bad_keys[i])), WS_HS_BAD_REQUEST);
    /* another valid key */
    assert_int_equal(verdict_of(rfc_with("Sec-WebSocket-Key",
                                         "Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==\r\n")),
                     WS_HS_UPGRADE);
    /* version 8 -> 426; no version -> 400 */
    assert_int_equal(verdict_of(rfc_with("Sec-WebSocket-Version", "Sec-WebSocket-Version: 8\r\n")),
                     WS_HS_UPGRADE_REQUIRED);
    assert_int_equal(verdict_of(rfc_with("Sec-WebSocket-Version", "")), WS_HS_BAD_REQUEST);
    /* POST -> 405 */
    char post[1024];
    snprintf(post, sizeof(post), "POST%s", rfc_request + 3);
    assert_int_equal(verdict_of(post), WS_HS_METHOD_NOT_ALLOWED);
    /* lower-case method is another method */
    snprintf(post, sizeof(post), "get%s", rfc_request + 3);
    assert_int_equal(verdict_of(post), WS_HS_METHOD_NOT_ALLOWED);
    /* HEAD upgrade -> 400 */
    snprintf(post, sizeof(post), "HEAD%s", rfc_request + 3);
    assert_int_equal(verdict_of(post), WS_HS_BAD_REQUEST);
    /* missing or wrong Upgrade, missing Connection token */
    assert_int_equal(verdict_of(rfc_with("Upgrade:", "")), WS_HS_BAD_REQUEST);
    assert_int_equal(verdict_of(rfc_with("Upgrade:", "Upgrade: h2c\r\n")), WS_HS_BAD_REQUEST);
    assert_int_equal(verdict_of(rfc_with("Connection:", "")), WS_HS_BAD_REQUEST);
    assert_int_equal(verdict_of(rfc_with("Connection:", "Connection: keep-alive\r\n")),
                     WS_HS_BAD_REQUEST);
    assert_int_equal(verdict_of(rfc_with("Connection:", "Connection: upgraded\r\n")),
                     WS_HS_BAD_REQUEST);
    /* missing Host, duplicate key */
    assert_int_equal(verdict_of(rfc_with("Host:", "")), WS_HS_BAD_REQUEST);
    assert_int_equal(
        verdict_of(rfc_with("Origin:", "Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==\r\n")),
        WS_HS_BAD_REQUEST);
    /* HTTP/1.0 upgrade */
    char v10[1024];
    snprintf(v10, sizeof(v10), "%s", rfc_request);
    memcpy(strstr(v10, "HTTP/1.1"), "HTTP/1.0", 8);
    assert_int_equal(verdict_of(v10), WS_HS_BAD_REQUEST);
}

static void test_handshake_tokens_case_and_lists(void **state)
{
    (void)state;
    const char *text = "GET / HTTP/1.1\r\n"
                       "host: a\r\n"
                       "UPGRADE: WebSocket\r\n"
                       "connection: keep-alive\r\n"
                       "Connection: ,  Keep-Alive ,UPGRADE\t\r\n"
                       "sec-websocket-key:dGhlIHNhbXBsZSBub25jZQ==   \r\n"
                       "SEC-WEBSOCKET-VERSION: 13\r\n"
                       "\r\n";
    assert_int_equal(verdict_of(text), WS_HS_UPGRADE);
}

static void test_handshake_plain_http(void **state)
{
    (void)state;
    assert_int_equal(verdict_of("GET /index.html HTTP/1.1\r\nHost: a\r\n\r\n"), WS_HS_PLAIN);
    assert_int_equal(verdict_of("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n"), WS_HS_PLAIN);
    assert_int_equal(verdict_of("GET / HTTP/1.0\r\n\r\n"), WS_HS_PLAIN);
    /* Upgrade to something else is ignored, as HTTP allows. */
    assert_int_equal(
        verdict_of("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"),
        WS_HS_PLAIN);
    assert_int_equal(verdict_of("GET / HTTP/1.1\r\n\r\n"), WS_HS_BAD_REQUEST);
    assert_int_equal(verdict_of("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), WS_HS_BAD_REQUEST);
    assert_int_equal(verdict_of("DELETE / HTTP/1.1\r\nHost: a\r\n\r\n"), WS_HS_METHOD_NOT_ALLOWED);
}

static void test_handshake_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "GET / HTTP/1.1\r\nHost : a\r\n\r\n",           /* space before colon */
        "GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", /* obsolete folding */
        "GET / HTTP/1.1\r\nX: a\nY: b\r\n\r\n",         /* bare LF */
        "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",            /* bare CR */
        "GET / HTTP/1.1\r\nX: a\x01\r\n\r\n",           /* control byte */
        "GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n",           /* DEL */
        "GET / HTTP/1.1\r\n: a\r\n\r\n",                /* empty name */
        "GET / HTTP/1.1\r\nX(y): a\r\n\r\n",            /* not a token */
        "GET / HTTP/1.1\r\nNoColon\r\n\r\n",
        "GET http://a/ HTTP/1.1\r\n\r\n", /* absolute form */
        "GET * HTTP/1.1\r\n\r\n",
        "GET / HTTP/2.0\r\n\r\n",
        "GET / HTTP/1.1 \r\n\r\n",
        "GET  / HTTP/1.1\r\n\r\n",
        "GET /\x01 HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\n\r\n\r\n",
        "\r\n\r\n",
        "GET\r\n\r\n",
    };
    struct ws_request req;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(ws_parse_request(bad[i], strlen(bad[i]), 0, &req), WS_ERROR);

    /* exactly WS_MAX_HEADERS headers is fine, one more is not */
    char buf[4096];
    size_t n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\n");
    for (int i = 0; i < WS_MAX_HEADERS; i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "X-%d: v\r\n", i);
    memcpy(buf + n, "\r\n", 3);
    assert_int_equal(ws_parse_request(buf, n + 2, 0, &req), (long)(n + 2));
    assert_int_equal(req.num_headers, WS_MAX_HEADERS);
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "X-last: v\r\n\r\n");
    assert_int_equal(ws_parse_request(buf, n, 0, &req), WS_ERROR);
}

static void test_handshake_head_limit(void **state)
{
    (void)state;
    struct ws_request req;
    char *buf = malloc(WS_MAX_HEAD + 64);
    assert_non_null(buf);
    /* A head of exactly WS_MAX_HEAD bytes: "GET / HTTP/1.1\r\nX: aaa...\r\n\r\n". */
    const char *start = "GET / HTTP/1.1\r\nX: ";
    size_t slen = strlen(start);
    memcpy(buf, start, slen);
    memset(buf + slen, 'a', WS_MAX_HEAD - slen - 4);
    memcpy(buf + WS_MAX_HEAD - 4, "\r\n\r\n", 4);
    assert_int_equal(ws_parse_request(buf, WS_MAX_HEAD, 0, &req), WS_MAX_HEAD);
    assert_int_equal(req.headers[0].value.len, WS_MAX_HEAD - slen - 4);
    assert_int_equal(ws_parse_request(buf, WS_MAX_HEAD - 1, 0, &req), WS_AGAIN);

    /* One byte longer: an error, whether or not the rest has arrived. */
    memset(buf + slen, 'a', WS_MAX_HEAD + 1 - slen - 4);
    memcpy(buf + WS_MAX_HEAD + 1 - 4, "\r\n\r\n", 4);
    assert_int_equal(ws_parse_request(buf, WS_MAX_HEAD, 0, &req), WS_ERROR);
    assert_int_equal(ws_parse_request(buf, WS_MAX_HEAD + 1, 0, &req), WS_ERROR);
    assert_int_equal(ws_parse_request(buf, WS_MAX_HEAD + 1, WS_MAX_HEAD - 1, &req), WS_ERROR);
    free(buf);
}

static void test_cgi_name(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(ws_cgi_name(out, sizeof(out), "User-Agent", 10), 15);
    assert_string_equal(out, "HTTP_USER_AGENT");
    assert_int_equal(ws_cgi_name(out, sizeof(out), "cookie", 6), 11);
    assert_string_equal(out, "HTTP_COOKIE");
    assert_int_equal(ws_cgi_name(out, sizeof(out), "Sec-WebSocket-Key", 17), 22);
    assert_string_equal(out, "HTTP_SEC_WEBSOCKET_KEY");
    assert_int_equal(ws_cgi_name(out, sizeof(out), "X_Real_IP", 9), 0);
    assert_int_equal(ws_cgi_name(out, sizeof(out), "Proxy", 5), 0);
    assert_int_equal(ws_cgi_name(out, sizeof(out), "proxy", 5), 0);
    assert_int_equal(ws_cgi_name(out, 15, "User-Agent", 10), 0);
    assert_int_equal(ws_cgi_name(out, 16, "User-Agent", 10), 15);
}

static void test_select_subprotocol(void **state)
{
    (void)state;
    char *const sup[] = {"json", "msgpack", NULL};
    char *const none[] = {NULL};
    assert_int_equal(ws_select_subprotocol("msgpack, json", 13, sup), 1);
    assert_int_equal(ws_select_subprotocol(" ,json ", 7, sup), 0);
    assert_int_equal(ws_select_subprotocol("JSON", 4, sup), -1);
    assert_int_equal(ws_select_subprotocol("jsonx, xml", 10, sup), -1);
    assert_int_equal(ws_select_subprotocol("", 0, sup), -1);
    assert_int_equal(ws_select_subprotocol("json", 4, none), -1);
}

static void test_build_error(void **state)
{
    (void)state;
    char out[512];
    long n = ws_build_error(out, sizeof(out), 400);
    const char *want = "HTTP/1.1 400 Bad Request\r\n"
                       "Content-Type: text/plain; charset=utf-8\r\n"
                       "Content-Length: 16\r\n"
                       "Connection: close\r\n"
                       "\r\n"
                       "400 Bad Request\n";
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, strlen(want));

    n = ws_build_error(out, sizeof(out), 426);
    assert_true(n > 0);
    assert_non_null(strstr(out, "HTTP/1.1 426 Upgrade Required\r\n"));
    assert_non_null(strstr(out, "\r\nSec-WebSocket-Version: 13\r\n"));
    assert_non_null(strstr(out, "\r\nConnection: close\r\n"));
    /* the body length matches Content-Length */
    const char *body = strstr(out, "\r\n\r\n") + 4;
    assert_int_equal(strlen(body), strlen("426 Upgrade Required\n"));

    static const int ok[] = {400, 403, 404, 405, 414, 426, 500, 503};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        n = ws_build_error(out, 256, ok[i]);
        assert_true(n > 0 && n < 256);
    }
    assert_int_equal(ws_build_error(out, sizeof(out), 200), -1);
    assert_int_equal(ws_build_error(out, 20, 404), -1);
}

/* ---- frames ---- */

/* Parses a complete header that must be valid. */
static struct ws_frame parse_ok(const uint8_t *p, size_t len, int from_client, size_t hlen)
{
    struct ws_frame f;
    for (size_t i = 0; i < hlen; i++)
        assert_int_equal(ws_parse_frame(p, i, from_client, UINT64_MAX, &f), WS_AGAIN);
    assert_int_equal(ws_parse_frame(p, len, from_client, UINT64_MAX, &f), (int)hlen);
    assert_int_equal(f.header_len, hlen);
    return f;
}

static int parse_code(const uint8_t *p, size_t len, int from_client, uint64_t max)
{
    struct ws_frame f;
    int r = ws_parse_frame(p, len, from_client, max, &f);
    return r == WS_ERROR ? f.close_code : r;
}

static void test_frame_rfc_examples(void **state)
{
    (void)state;
    /* §5.7: unmasked "Hello" (from a server) */
    const uint8_t hello[] = {0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
    struct ws_frame f = parse_ok(hello, sizeof(hello), 0, 2);
    assert_int_equal(f.fin, 1);
    assert_int_equal(f.opcode, WS_OP_TEXT);
    assert_int_equal(f.masked, 0);
    assert_int_equal(f.payload_len, 5);

    /* §5.7: masked "Hello" (from a client) */
    uint8_t mhello[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    f = parse_ok(mhello, sizeof(mhello), 1, 6);
    assert_int_equal(f.masked, 1);
    assert_int_equal(f.payload_len, 5);
    const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
    assert_memory_equal(f.mask, key, 4);
    ws_unmask(mhello + 6, 5, f.mask, 0);
    assert_memory_equal(mhello + 6, "Hello", 5);

    /* §5.7: fragmented "Hel" + "lo" */
    const uint8_t frag1[] = {0x01, 0x03, 0x48, 0x65, 0x6c};
    const uint8_t frag2[] = {0x80, 0x02, 0x6c, 0x6f};
    f = parse_ok(frag1, sizeof(frag1), 0, 2);
    assert_int_equal(f.fin, 0);
    assert_int_equal(f.opcode, WS_OP_TEXT);
    f = parse_ok(frag2, sizeof(frag2), 0, 2);
    assert_int_equal(f.fin, 1);
    assert_int_equal(f.opcode, WS_OP_CONT);

    /* §5.7: unmasked ping, masked pong */
    const uint8_t ping[] = {0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
    f = parse_ok(ping, sizeof(ping), 0, 2);
    assert_int_equal(f.opcode, WS_OP_PING);
    const uint8_t pong[] = {0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    f = parse_ok(pong, sizeof(pong), 1, 6);
    assert_int_equal(f.opcode, WS_OP_PONG);

    /* §5.7: 256 bytes and 64 KiB binary, unmasked */
    const uint8_t b256[] = {0x82, 0x7e, 0x01, 0x00};
    f = parse_ok(b256, sizeof(b256), 0, 4);
    assert_int_equal(f.payload_len, 256);
    const uint8_t b64k[] = {0x82, 0x7f, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00};
    f = parse_ok(b64k, sizeof(b64k), 0, 10);
    assert_int_equal(f.payload_len, 65536);
}

static void test_frame_lengths(void **state)
{
    (void)state;
    static const struct {
        uint64_t len;
        uint8_t bytes[10];
        size_t n;
    } cases[] = {
        {0, {0x82, 0x00}, 2},
        {125, {0x82, 0x7d}, 2},
        {126, {0x82, 0x7e, 0x00, 0x7e}, 4},
        {65535, {0x82, 0x7e, 0xff, 0xff}, 4},
        {65536, {0x82, 0x7f, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00}, 10},
        {0x0123456789abcdefull, {0x82, 0x7f, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}, 10},
        {0x7fffffffffffffffull, {0x82, 0x7f, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 10},
    };
    const uint8_t mask[4] = {1, 2, 3, 4};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t out[WS_MAX_FRAME_HEADER];
        /* server builder: exactly the known bytes */
        assert_int_equal(ws_frame_header(out, WS_OP_BINARY, 1, cases[i].len), cases[i].n);
        assert_memory_equal(out, cases[i].bytes, cases[i].n);
        struct ws_frame f = parse_ok(out, cases[i].n, 0, cases[i].n);
        assert_int_equal(f.payload_len, cases[i].len);
        assert_int_equal(f.opcode, WS_OP_BINARY);
        assert_int_equal(f.fin, 1);

        /* client builder: the same with the mask bit and the key */
        size_t n = ws_client_frame_header(out, WS_OP_BINARY, 1, cases[i].len, mask);
        assert_int_equal(n, cases[i].n + 4);
        assert_int_equal(out[0], cases[i].bytes[0]);
        assert_int_equal(out[1], cases[i].bytes[1] | 0x80);
        assert_memory_equal(out + 2, cases[i].bytes + 2, cases[i].n - 2);
        assert_memory_equal(out + cases[i].n, mask, 4);
        f = parse_ok(out, n, 1, n);
        assert_int_equal(f.payload_len, cases[i].len);
        assert_memory_equal(f.mask, mask, 4);
    }
    /* non-FIN text, and non-minimal encodings are accepted */
    uint8_t out[WS_MAX_FRAME_HEADER];
    assert_int_equal(ws_frame_header(out, WS_OP_TEXT, 0, 3), 2);
    assert_int_equal(out[0], 0x01);
    const uint8_t nonmin16[] = {0x81, 0xfe, 0x00, 0x05, 1, 2, 3, 4};
    assert_int_equal(parse_ok(nonmin16, sizeof(nonmin16), 1, 8).payload_len, 5);
    const uint8_t nonmin64[] = {0x81, 0xff, 0, 0, 0, 0, 0, 0, 0, 0x05, 1, 2, 3, 4};
    assert_int_equal(parse_ok(nonmin64, sizeof(nonmin64), 1, 14).payload_len, 5);
}

static void test_frame_masking_rules(void **state)
{
    (void)state;
    const uint8_t unmasked[] = {0x81, 0x05};
    const uint8_t masked[] = {0x81, 0x85, 1, 2, 3, 4};
    /* a server requires masking, a client refuses it */
    assert_int_equal(parse_code(unmasked, 2, 1, 1000), WS_CLOSE_PROTOCOL);
    assert_int_equal(parse_code(masked, 6, 0, 1000), WS_CLOSE_PROTOCOL);
    assert_int_equal(parse_code(masked, 6, 1, 1000), 6);
    assert_int_equal(parse_code(unmasked, 2, 0, 1000), 2);
}

static void test_frame_control_rules(void **state)
{
    (void)state;
    /* ping with 125 bytes: fine; 126 (even as 16-bit length): 1002 */
    const uint8_t ping125[] = {0x89, 0xfd, 1, 2, 3, 4};
    assert_int_equal(parse_code(ping125, sizeof(ping125), 1, 1000), 6);
    const uint8_t ping126[] = {0x89, 0xfe, 0x00, 0x7e, 1, 2, 3, 4};
    assert_int_equal(parse_code(ping126, 2, 1, 1000), WS_CLOSE_PROTOCOL);
    const uint8_t ping_small16[] = {0x89, 0xfe, 0x00, 0x05, 1, 2, 3, 4};
    assert_int_equal(parse_code(ping_small16, sizeof(ping_small16), 1, 1000), WS_CLOSE_PROTOCOL);
    /* fragmented control frames: 1002, known from the first byte */
    const uint8_t ping_nofin[] = {0x09, 0x80, 1, 2, 3, 4};
    assert_int_equal(parse_code(ping_nofin, 1, 1, 1000), WS_CLOSE_PROTOCOL);
    const uint8_t close_nofin[] = {0x08, 0x80, 1, 2, 3, 4};
    assert_int_equal(parse_code(close_nofin, sizeof(close_nofin), 1, 1000), WS_CLOSE_PROTOCOL);
    /* a close with 125 bytes passes even when max_payload is smaller */
    const uint8_t close125[] = {0x88, 0xfd, 1, 2, 3, 4};
    assert_int_equal(parse_code(close125, sizeof(close125), 1, 200), 6);
}

static void test_frame_rsv_and_opcodes(void **state)
{
    (void)state;
    for (int rsv = 1; rsv < 8; rsv++) {
        uint8_t b[] = {(uint8_t)(0x81 | rsv << 4), 0x80, 1, 2, 3, 4};
        assert_int_equal(parse_code(b, 1, 1, 1000), WS_CLOSE_PROTOCOL);
    }
    for (int op = 0; op < 16; op++) {
        uint8_t b[] = {(uint8_t)(0x80 | op), 0x80, 1, 2, 3, 4};
        int known = op <= 2 || (op >= 8 && op <= 10);
        assert_int_equal(parse_code(b, sizeof(b), 1, 1000), known ? 6 : WS_CLOSE_PROTOCOL);
    }
}

static void test_frame_length_limits(void **state)
{
    (void)state;
    /* 64-bit length with the top bit set: 1002 as soon as that byte is there */
    const uint8_t top[] = {0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4};
    assert_int_equal(parse_code(top, 3, 1, UINT64_MAX), WS_CLOSE_PROTOCOL);
    assert_int_equal(parse_code(top, sizeof(top), 1, UINT64_MAX), WS_CLOSE_PROTOCOL);
    /* over max_payload: 1009, before the mask has arrived */
    const uint8_t big[] = {0x82, 0xfe, 0x04, 0x01, 1, 2, 3, 4};
    assert_int_equal(parse_code(big, 4, 1, 1024), WS_CLOSE_TOO_BIG);
    assert_int_equal(parse_code(big, sizeof(big), 1, 1025), 8);
    const uint8_t small[] = {0x82, 0x8b, 1, 2, 3, 4};
    assert_int_equal(parse_code(small, sizeof(small), 1, 10), WS_CLOSE_TOO_BIG);
    assert_int_equal(parse_code(small, sizeof(small), 1, 11), 6);
}

static void test_unmask_in_pieces(void **state)
{
    (void)state;
    uint8_t plain[300], whole[300], pieces[300];
    const uint8_t mask[4] = {0xa1, 0x5b, 0x07, 0xfe};
    for (size_t i = 0; i < sizeof(plain); i++)
        plain[i] = (uint8_t)(i * 7 + 3);
    memcpy(whole, plain, sizeof(plain));
    ws_unmask(whole, sizeof(whole), mask, 0);
    for (size_t i = 0; i < sizeof(plain); i++)
        assert_int_equal(whole[i], plain[i] ^ mask[i & 3]);
    /* every split size, at every odd offset */
    for (size_t step = 1; step < 20; step++) {
        memcpy(pieces, plain, sizeof(plain));
        for (size_t off = 0; off < sizeof(pieces); off += step) {
            size_t n = off + step > sizeof(pieces) ? sizeof(pieces) - off : step;
            ws_unmask(pieces + off, n, mask, off);
        }
        assert_memory_equal(pieces, whole, sizeof(whole));
    }
    /* masking twice is the identity */
    ws_unmask(whole, sizeof(whole), mask, 0);
    assert_memory_equal(whole, plain, sizeof(plain));
}

/* ---- fragmentation ---- */

static struct ws_frame data_frame(int opcode, int fin, uint64_t len)
{
    struct ws_frame f = {.fin = fin, .opcode = opcode, .masked = 1, .payload_len = len};
    return f;
}

static void test_message_fragmentation(void **state)
{
    (void)state;
    struct ws_message m;
    ws_message_init(&m);
    struct ws_frame f;

    /* continuation with nothing started */
    f = data_frame(WS_OP_CONT, 1, 1);
    assert_int_equal(ws_message_frame(&m, &f, 100), WS_CLOSE_PROTOCOL);

    /* TEXT(no FIN), PING, CLOSE-free interleave, CONT(no FIN), CONT(FIN) */
    f = data_frame(WS_OP_TEXT, 0, 3);
    assert_int_equal(ws_message_frame(&m, &f, 100), 0);
    assert_int_equal(m.opcode, WS_OP_TEXT);
    f = data_frame(WS_OP_PING, 1, 4);
    assert_int_equal(ws_message_frame(&m, &f, 100), 0);
    f = data_frame(WS_OP_PONG, 1, 0);
    assert_int_equal(ws_message_frame(&m, &f, 100), 0);
    f = data_frame(WS_OP_CONT, 0, 2);
    assert_int_equal(ws_message_frame(&m, &f, 100), 0);
    /* a new data frame in the middle */
    struct ws_message saved = m;
    f = data_frame(WS_OP_BINARY, 1, 2);
    assert_int_equal(ws_message_frame(&m, &f, 100), WS_CLOSE_PROTOCOL);
    f = data_frame(WS_OP_TEXT, 1, 2);
    assert_int_equal(ws_message_frame(&saved, &f, 100), WS_CLOSE_PROTOCOL);
    m = saved;
    f = data_frame(WS_OP_CONT, 1, 5);
    assert_int_equal(ws_message_frame(&m, &f, 100), 0);
    assert_int_equal(m.size, 10);
    assert_int_equal(m.fin, 1);
    assert_int_equal(ws_message_end(&m), 0);
    assert_int_equal(m.opcode, 0);

    /* after the end a new message may start; an unfragmented one is one frame */
    f = data_frame(WS_OP_BINARY, 1, 100);
    assert_int_equal(ws_message_frame(&m, &f, 100), 0);
    assert_int_equal(ws_message_end(&m), 0);
    f = data_frame(WS_OP_CONT, 1, 0);
    assert_int_equal(ws_message_frame(&m, &f, 100), WS_CLOSE_PROTOCOL);
}

static void test_message_size_limit(void **state)
{
    (void)state;
    struct ws_message m = {0};
    struct ws_frame f = data_frame(WS_OP_BINARY, 0, 60);
    assert_int_equal(ws_message_frame(&m, &f, 100), 0);
    f = data_frame(WS_OP_CONT, 0, 40);
    assert_int_equal(ws_message_frame(&m, &f, 100), 0);
    f = data_frame(WS_OP_CONT, 1, 1);
    assert_int_equal(ws_message_frame(&m, &f, 100), WS_CLOSE_TOO_BIG);
    /* no wrap-around with a huge length */
    f = data_frame(WS_OP_CONT, 1, UINT64_MAX);
    assert_int_equal(ws_message_frame(&m, &f, 100), WS_CLOSE_TOO_BIG);
    ws_message_init(&m);
    f = data_frame(WS_OP_TEXT, 1, 101);
    assert_int_equal(ws_message_frame(&m, &f, 100), WS_CLOSE_TOO_BIG);
}

static void test_message_utf8_across_fragments(void **state)
{
    (void)state;
    struct ws_message m = {0};
    const uint8_t euro[] = {0xe2, 0x82, 0xac};
    struct ws_frame f = data_frame(WS_OP_TEXT, 0, 1);
    assert_int_equal(ws_message_frame(&m, &f, 100), 0);
    assert_int_equal(ws_message_data(&m, euro, 1), 0);
    f = data_frame(WS_OP_CONT, 1, 2);
    assert_int_equal(ws_message_frame(&m, &f, 100), 0);
    assert_int_equal(ws_message_data(&m, euro + 1, 2), 0);
    assert_int_equal(ws_message_end(&m), 0);

    /* a text message ending inside a character */
    f = data_frame(WS_OP_TEXT, 1, 2);
    assert_int_equal(ws_message_frame(&m, &f, 100), 0);
    assert_int_equal(ws_message_data(&m, euro, 2), 0);
    assert_int_equal(ws_message_end(&m), WS_CLOSE_INVALID_DATA);
    assert_int_equal(m.opcode, 0);

    /* invalid text fails at once; binary is never checked */
    f = data_frame(WS_OP_TEXT, 1, 2);
    assert_int_equal(ws_message_frame(&m, &f, 100), 0);
    assert_int_equal(ws_message_data(&m, (const uint8_t *)"\xc0\x80", 2), WS_CLOSE_INVALID_DATA);
    ws_message_init(&m);
    f = data_frame(WS_OP_BINARY, 1, 2);
    assert_int_equal(ws_message_frame(&m, &f, 100), 0);
    assert_int_equal(ws_message_data(&m, (const uint8_t *)"\xc0\x80", 2), 0);
    assert_int_equal(ws_message_data(&m, euro, 2), 0);
    assert_int_equal(ws_message_end(&m), 0);
}

/* ---- UTF-8 ---- */

static int utf8_of(const char *s, size_t n)
{
    struct ws_utf8 u = {0};
    return ws_utf8_feed(&u, (const uint8_t *)s, n);
}
#define UTF8(lit) utf8_of(lit, sizeof(lit) - 1)

static void test_utf8_valid(void **state)
{
    (void)state;
    assert_int_equal(UTF8(""), WS_UTF8_ACCEPT);
    assert_int_equal(UTF8("plain ascii that is longer than a word or two"), WS_UTF8_ACCEPT);
    assert_int_equal(UTF8("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"),
                     WS_UTF8_ACCEPT);                           /* κόσμε */
    assert_int_equal(UTF8("\xc2\x80"), WS_UTF8_ACCEPT);         /* U+0080 */
    assert_int_equal(UTF8("\xdf\xbf"), WS_UTF8_ACCEPT);         /* U+07FF */
    assert_int_equal(UTF8("\xe0\xa0\x80"), WS_UTF8_ACCEPT);     /* U+0800 */
    assert_int_equal(UTF8("\xed\x9f\xbf"), WS_UTF8_ACCEPT);     /* U+D7FF */
    assert_int_equal(UTF8("\xee\x80\x80"), WS_UTF8_ACCEPT);     /* U+E000 */
    assert_int_equal(UTF8("\xef\xbf\xbd"), WS_UTF8_ACCEPT);     /* U+FFFD */
    assert_int_equal(UTF8("\xf0\x90\x80\x80"), WS_UTF8_ACCEPT); /* U+10000 */
    assert_int_equal(UTF8("\xf4\x8f\xbf\xbf"), WS_UTF8_ACCEPT); /* U+10FFFF */
    assert_int_equal(UTF8("12345678\xe2\x82\xac"
                          "12345678abc\xf0\x9d\x84\x9e"),
                     WS_UTF8_ACCEPT);
}

static void test_utf8_invalid(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "\xc0\x80",
        "\xc1\xbf", /* overlong 2-byte */
        "\xe0\x80\x80",
        "\xe0\x9f\xbf", /* overlong 3-byte */
        "\xf0\x80\x80\x80",
        "\xf0\x8f\xbf\xbf", /* overlong 4-byte */
        "\xed\xa0\x80",
        "\xed\xbf\xbf",             /* surrogates D800, DFFF */
        "\xed\xa0\x80\xed\xb0\x80", /* a CESU-8 pair */
        "\xf4\x90\x80\x80",         /* U+110000 */
        "\xf5\x80\x80\x80",
        "\xf7\xbf\xbf\xbf",
        "\xf8\x88\x80\x80\x80",
        "\xff",
        "\xfe",
        "\x80",
        "\xbf",
        "a\x80", /* stray continuation */
        "\xc3\x41",
        "\xe2\x82\x41",
        "\xf0\x9d\x84\x41", /* missing continuation */
        "12345678\xc0\x80", /* after the ASCII fast path */
        ("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"
         "edited"),
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(utf8_of(bad[i], strlen(bad[i])), WS_UTF8_INVALID);
    /* invalid sticks, even if what follows is fine */
    struct ws_utf8 u = {0};
    assert_int_equal(ws_utf8_feed(&u, (const uint8_t *)"\xc0", 1), WS_UTF8_INVALID);
    assert_int_equal(ws_utf8_feed(&u, (const uint8_t *)"abc", 3), WS_UTF8_INVALID);
    assert_int_equal(ws_utf8_feed(&u, NULL, 0), WS_UTF8_INVALID);
}

static void test_utf8_truncated_everywhere(void **state)
{
    (void)state;
    /* a, é (2), € (3), 𝄞 (4), ASCII run, € again */
    static const uint8_t s[] = "a\xc3\xa9\xe2\x82\xac\xf0\x9d\x84\x9e"
                               "bcdefghij\xe2\x82\xac";
    const size_t n = sizeof(s) - 1;
    /* character boundaries (offsets where a prefix is complete) */
    static const size_t bounds[] = {0, 1, 3, 6, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 22};
    size_t b = 0;
    for (size_t i = 0; i <= n; i++) {
        int at_boundary = b < sizeof(bounds) / sizeof(bounds[0]) && bounds[b] == i;
        if (at_boundary)
            b++;
        int want = at_boundary ? WS_UTF8_ACCEPT : WS_UTF8_INCOMPLETE;
        /* the prefix in one piece */
        struct ws_utf8 u = {0};
        assert_int_equal(ws_utf8_feed(&u, s, i), want);
        /* ... and the rest after it gives the whole string's answer */
        assert_int_equal(ws_utf8_feed(&u, s + i, n - i), WS_UTF8_ACCEPT);
        /* the prefix a byte at a time */
        struct ws_utf8 v = {0};
        int r = WS_UTF8_ACCEPT;
        for (size_t k = 0; k < i; k++)
            r = ws_utf8_feed(&v, s + k, 1);
        assert_int_equal(r, want);
    }
    assert_int_equal(b, sizeof(bounds) / sizeof(bounds[0]));
}

/* ---- close frames ---- */

static void test_close_codes(void **state)
{
    (void)state;
    static const int valid[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009,
                                1010, 1011, 3000, 3999, 4000, 4999};
    static const int invalid[] = {0,    999,  1004, 1005, 1006, 1012, 1013,  1014,
                                  1015, 1016, 1100, 2000, 2999, 5000, 65535, -1};
    for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++)
        assert_true(ws_close_code_valid(valid[i]));
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++)
        assert_false(ws_close_code_valid(invalid[i]));
}

static void test_close_payload(void **state)
{
    (void)state;
    uint8_t out[WS_MAX_CONTROL_PAYLOAD];
    assert_int_equal(ws_close_payload(out, 1000, "bye", 3), 5);
    assert_memory_equal(out,
                        "\x03\xe8"
                        "bye",
                        5);
    assert_int_equal(ws_close_payload(out, 1009, NULL, 0), 2);
    assert_memory_equal(out, "\x03\xf1", 2);
    assert_int_equal(ws_close_payload(out, 0, "ignored", 7), 0);

    /* a long reason is cut at 123 bytes, but never inside a character */
    char reason[200];
    memset(reason, 'x', sizeof(reason));
    assert_int_equal(ws_close_payload(out, 1000, reason, sizeof(reason)), 125);
    memcpy(reason + 122, "\xe2\x82\xac", 3); /* € at 122..124 straddles the cut */
    size_t n = ws_close_payload(out, 1000, reason, sizeof(reason));
    assert_int_equal(n, 2 + 122);
    int code;
    const uint8_t *r;
    size_t rlen;
    assert_int_equal(ws_close_parse(out, n, &code, &r, &rlen), 0);
    assert_int_equal(code, 1000);
    assert_int_equal(rlen, 122);
    memset(reason, 'x', sizeof(reason));
    memcpy(reason + 120, "\xe2\x82\xac", 3); /* € at 120..122: fits */
    assert_int_equal(ws_close_payload(out, 1000, reason, sizeof(reason)), 125);
}

static void test_close_parse(void **state)
{
    (void)state;
    int code;
    const uint8_t *r;
    size_t rlen;
    assert_int_equal(ws_close_parse((const uint8_t *)"", 0, &code, &r, &rlen), 0);
    assert_int_equal(code, WS_CLOSE_NO_STATUS);
    assert_int_equal(ws_close_parse((const uint8_t *)"\x03", 1, &code, &r, &rlen),
                     WS_CLOSE_PROTOCOL);
    assert_int_equal(ws_close_parse((const uint8_t *)"\x03\xe8ok", 4, &code, &r, &rlen), 0);
    assert_int_equal(code, 1000);
    assert_int_equal(rlen, 2);
    assert_memory_equal(r, "ok", 2);
    assert_int_equal(ws_close_parse((const uint8_t *)"\x0b\xb8", 2, &code, &r, &rlen), 0);
    assert_int_equal(code, 3000);
    assert_int_equal(ws_close_parse((const uint8_t *)"\x03\xed", 2, &code, &r, &rlen),
                     WS_CLOSE_PROTOCOL); /* 1005 on the wire */
    assert_int_equal(ws_close_parse((const uint8_t *)"\x03\xe7", 2, &code, &r, &rlen),
                     WS_CLOSE_PROTOCOL); /* 999 */
    assert_int_equal(ws_close_parse((const uint8_t *)"\x03\xe8\xc0\x80", 4, &code, &r, &rlen),
                     WS_CLOSE_INVALID_DATA);
    assert_int_equal(ws_close_parse((const uint8_t *)"\x03\xe8\xe2\x82", 4, &code, &r, &rlen),
                     WS_CLOSE_INVALID_DATA);
}

static int same(const char *origin, const char *host)
{
    return ws_origin_same_host(origin, strlen(origin), host, host ? strlen(host) : 0);
}

static void test_origin_same_host(void **state)
{
    (void)state;
    assert_true(same("http://example.com", "example.com"));
    assert_true(same("http://Example.COM", "example.com"));
    assert_true(same("https://example.com", "example.com:443"));
    assert_true(same("http://example.com:80", "example.com"));
    assert_true(same("http://127.0.0.1:9005", "127.0.0.1:9005"));
    assert_true(same("wss://[::1]:8443", "[::1]:8443"));
    assert_true(same("http://example.com/", "example.com"));
    /* another site, port or scheme's port */
    assert_false(same("http://evil.example", "example.com"));
    assert_false(same("http://example.com.evil.example", "example.com"));
    assert_false(same("http://example.com:8080", "example.com"));
    assert_false(same("https://example.com", "example.com:80"));
    assert_false(same("http://127.0.0.1:9006", "127.0.0.1:9005"));
    /* not an origin a browser sends for a page */
    assert_false(same("null", "example.com"));
    assert_false(same("file://", "example.com"));
    assert_false(same("ftp://example.com", "example.com"));
    assert_false(same("http://user@example.com", "example.com"));
    assert_false(same("http://example.com/path", "example.com"));
    assert_false(same("http://", "example.com"));
    assert_false(same("http://example.com:", "example.com"));
    assert_false(same("http://example.com:99999", "example.com:99999"));
    assert_false(same("http://[::1", "[::1]"));
    assert_false(same("http://example.com", NULL));
    assert_false(same("http://example.com", ""));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_key_rfc),
        cmocka_unit_test(test_handshake_rfc_example),
        cmocka_unit_test(test_handshake_no_query_and_trailing_bytes),
        cmocka_unit_test(test_handshake_split_every_byte),
        cmocka_unit_test(test_handshake_errors),
        cmocka_unit_test(test_handshake_tokens_case_and_lists),
        cmocka_unit_test(test_handshake_plain_http),
        cmocka_unit_test(test_handshake_malformed),
        cmocka_unit_test(test_handshake_head_limit),
        cmocka_unit_test(test_cgi_name),
        cmocka_unit_test(test_origin_same_host),
        cmocka_unit_test(test_select_subprotocol),
        cmocka_unit_test(test_build_error),
        cmocka_unit_test(test_frame_rfc_examples),
        cmocka_unit_test(test_frame_lengths),
        cmocka_unit_test(test_frame_masking_rules),
        cmocka_unit_test(test_frame_control_rules),
        cmocka_unit_test(test_frame_rsv_and_opcodes),
        cmocka_unit_test(test_frame_length_limits),
        cmocka_unit_test(test_unmask_in_pieces),
        cmocka_unit_test(test_message_fragmentation),
        cmocka_unit_test(test_message_size_limit),
        cmocka_unit_test(test_message_utf8_across_fragments),
        cmocka_unit_test(test_utf8_valid),
        cmocka_unit_test(test_utf8_invalid),
        cmocka_unit_test(test_utf8_truncated_everywhere),
        cmocka_unit_test(test_close_codes),
        cmocka_unit_test(test_close_payload),
        cmocka_unit_test(test_close_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
