/* fuzz_ws_handshake.c - libFuzzer target for the opening handshake in ws.c:
 * request parsing, the verdict, CGI names, the same-origin check, subprotocol
 * choice and the responses.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc \
 *       tests/fuzz/fuzz_ws_handshake.c src/ws.c -lcrypto -o /tmp/fuzz_ws_handshake
 *
 * Besides memory errors it checks: every pointer in the result lies inside the
 * head; names are tokens and values carry no CR/LF; parsing in two steps (the
 * resumed scan) gives what parsing at once gives; a copy of the head parses the
 * same (ws.h promises the caller can keep a copy); the responses always fit the
 * sizes ws.h documents. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

static void fuzz_in(struct ws_str s, const char *buf, long n)
{
    if (s.p == NULL)
        return;
    CHECK(s.p >= buf && s.p + s.len <= buf + n);
}

static void fuzz_check_request(const struct ws_request *req, const char *buf, long n)
{
    fuzz_in(req->method, buf, n);
    fuzz_in(req->target, buf, n);
    fuzz_in(req->path, buf, n);
    fuzz_in(req->query, buf, n);
    CHECK(req->method.len > 0 && req->target.len > 0 && req->target.p[0] == '/');
    CHECK(req->path.len + (req->query.len ? req->query.len + 1 : 0) <= req->target.len);
    CHECK(req->num_headers <= WS_MAX_HEADERS);
    for (size_t i = 0; i < req->num_headers; i++) {
        const struct ws_header *h = &req->headers[i];
        fuzz_in(h->name, buf, n);
        fuzz_in(h->value, buf, n);
        CHECK(h->name.len > 0);
        CHECK(memchr(h->name.p, ':', h->name.len) == NULL);
        CHECK(memchr(h->value.p, '\r', h->value.len) == NULL);
        CHECK(memchr(h->value.p, '\n', h->value.len) == NULL);
        CHECK(h->value.len == 0 || (h->value.p[0] != ' ' && h->value.p[h->value.len - 1] != ' '));

        char cgi[WS_MAX_HEAD + 6];
        size_t cl = ws_cgi_name(cgi, h->name.len + 6, h->name.p, h->name.len);
        CHECK(cl == 0 || cl == h->name.len + 5);
        for (size_t k = 0; k < cl; k++)
            CHECK(cgi[k] != '-' && !(cgi[k] >= 'a' && cgi[k] <= 'z'));
        CHECK(cl == 0 || cgi[cl] == '\0');
    }
    fuzz_in(req->host, buf, n);
    fuzz_in(req->origin, buf, n);
    if (req->origin.p) {
        /* Any bytes in, a yes or a no out; a yes needs a Host to compare with. */
        int same = ws_origin_same_host(req->origin.p, req->origin.len, req->host.p, req->host.len);
        CHECK(same == 0 || same == 1);
        CHECK(!same || req->host.len > 0);
    }
    fuzz_in(req->key, buf, n);
    fuzz_in(req->version, buf, n);
    fuzz_in(req->protocol, buf, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct ws_request req, req2;
    const char *buf = (const char *)data;

    long n = ws_parse_request(buf, size, 0, &req);
    CHECK(n == WS_AGAIN || n == WS_ERROR || (n > 0 && (size_t)n <= size && n <= WS_MAX_HEAD));
    if (n == WS_AGAIN)
        CHECK(size < WS_MAX_HEAD);

    /* In two steps, resuming the scan, the answer is the same. */
    size_t cut = size ? data[0] % (size + 1) : 0;
    long a = ws_parse_request(buf, cut, 0, &req2);
    if (a == WS_AGAIN)
        CHECK(ws_parse_request(buf, size, cut, &req2) == n);
    else
        CHECK(a == n);
    if (n <= 0)
        return 0;

    fuzz_check_request(&req, buf, n);

    /* A copy parses the same. */
    char *copy = malloc((size_t)n);
    CHECK(copy != NULL);
    memcpy(copy, buf, (size_t)n);
    CHECK(ws_parse_request(copy, (size_t)n, 0, &req2) == n);
    CHECK(req2.num_headers == req.num_headers && ws_check_request(&req2) == ws_check_request(&req));
    free(copy);

    enum ws_verdict v = ws_check_request(&req);
    char out[1024];
    switch (v) {
    case WS_HS_UPGRADE: {
        static char *const sup[] = {"chat", "superchat", "json", NULL};
        CHECK(req.key.len == 24);
        int k = req.protocol.p ? ws_select_subprotocol(req.protocol.p, req.protocol.len, sup) : -1;
        CHECK(k >= -1 && k < 3);
        long m =
            ws_build_accept(out, 256 + (k >= 0 ? strlen(sup[k]) : 0), &req, k >= 0 ? sup[k] : NULL);
        CHECK(m > 0);
        break;
    }
    case WS_HS_PLAIN:
        break;
    case WS_HS_BAD_REQUEST:
    case WS_HS_METHOD_NOT_ALLOWED:
    case WS_HS_UPGRADE_REQUIRED:
        CHECK(ws_build_error(out, 256, v) > 0);
        break;
    default:
        abort();
    }
    return 0;
}
