/* test_fcgi.c - FastCGI record codec and CGI response-header parser.
 * The header parser is fed every response split at every byte and one byte at a
 * time, because the backend's STDOUT records can cut a header anywhere. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "fcgi.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_header_known_bytes(void **state)
{
    (void)state;
    uint8_t out[FCGI_HEADER_LEN];
    static const uint8_t want[FCGI_HEADER_LEN] = {1, 6, 0x12, 0x34, 0xff, 0xfe, 7, 0};
    fcgi_header_encode(out, FCGI_STDOUT, 0x1234, 0xfffe, 7);
    assert_memory_equal(out, want, sizeof(want));

    struct fcgi_header h;
    assert_int_equal(fcgi_header_decode(want, sizeof(want), &h), FCGI_OK);
    assert_int_equal(h.version, 1);
    assert_int_equal(h.type, FCGI_STDOUT);
    assert_int_equal(h.request_id, 0x1234);
    assert_int_equal(h.content_length, 0xfffe);
    assert_int_equal(h.padding_length, 7);
}

static void test_header_round_trip(void **state)
{
    (void)state;
    static const uint16_t ids[] = {0, 1, 255, 256, 65535};
    static const uint16_t lens[] = {0, 1, 127, 128, 255, 256, 65535};
    for (int type = FCGI_BEGIN_REQUEST; type <= FCGI_UNKNOWN_TYPE; type++)
        for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
            for (size_t j = 0; j < sizeof(lens) / sizeof(lens[0]); j++) {
                uint8_t out[FCGI_HEADER_LEN];
                struct fcgi_header h;
                uint8_t pad = (uint8_t)(lens[j] * 7);
                fcgi_header_encode(out, type, ids[i], lens[j], pad);
                assert_int_equal(fcgi_header_decode(out, sizeof(out), &h), FCGI_OK);
                assert_int_equal(h.type, type);
                assert_int_equal(h.request_id, ids[i]);
                assert_int_equal(h.content_length, lens[j]);
                assert_int_equal(h.padding_length, pad);
            }
}

static void test_header_bad_version(void **state)
{
    (void)state;
    uint8_t b[FCGI_HEADER_LEN] = {0, 6, 0, 1, 0, 0, 0, 0};
    struct fcgi_header h;
    assert_int_equal(fcgi_header_decode(b, sizeof(b), &h), FCGI_ERROR);
    b[0] = 2;
    assert_int_equal(fcgi_header_decode(b, sizeof(b), &h), FCGI_ERROR);
    b[0] = 'H'; /* an HTTP server answering on the FastCGI port */
    assert_int_equal(fcgi_header_decode(b, sizeof(b), &h), FCGI_ERROR);
}

static void test_header_truncated(void **state)
{
    (void)state;
    uint8_t b[FCGI_HEADER_LEN];
    struct fcgi_header h;
    fcgi_header_encode(b, FCGI_STDOUT, 1, 10, 0);
    for (size_t n = 0; n < FCGI_HEADER_LEN; n++)
        assert_int_equal(fcgi_header_decode(b, n, &h), FCGI_AGAIN);
    /* Even with a bad version: nothing can be said before eight bytes. */
    b[0] = 9;
    assert_int_equal(fcgi_header_decode(b, 3, &h), FCGI_AGAIN);
}

static void test_begin_request(void **state)
{
    (void)state;
    uint8_t out[16];
    static const uint8_t keep[16] = {1, 1, 0xab, 0xcd, 0, 8, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0};
    static const uint8_t nokeep[16] = {1, 1, 0, 1, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0};
    memset(out, 0x55, sizeof(out));
    fcgi_begin_request_encode(out, 0xabcd, 1);
    assert_memory_equal(out, keep, sizeof(out));
    memset(out, 0x55, sizeof(out));
    fcgi_begin_request_encode(out, 1, 0);
    assert_memory_equal(out, nokeep, sizeof(out));
}

static void test_end_request(void **state)
{
    (void)state;
    static const uint8_t body[8] = {0x01, 0x02, 0x03, 0x04, 3, 0xaa, 0xbb, 0xcc};
    uint32_t app = 0;
    uint8_t proto = 0;
    assert_int_equal(fcgi_end_request_decode(body, 8, &app, &proto), FCGI_OK);
    assert_int_equal(app, 0x01020304);
    assert_int_equal(proto, 3);

    static const uint8_t fail[8] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0};
    assert_int_equal(fcgi_end_request_decode(fail, 8, &app, &proto), FCGI_OK);
    assert_int_equal(app, 0xffffffffu);
    assert_int_equal(proto, 0);

    for (size_t n = 0; n < 8; n++)
        assert_int_equal(fcgi_end_request_decode(body, n, &app, &proto), FCGI_ERROR);
}

static const size_t nv_lens[] = {0, 127, 128, 65535, 100000};
#define NV_NLENS (sizeof(nv_lens) / sizeof(nv_lens[0]))

static char *nv_fill(size_t n, char seed)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    for (size_t i = 0; i < n; i++)
        s[i] = (char)(seed + i % 23);
    return s;
}

static void test_nv_known_bytes(void **state)
{
    (void)state;
    uint8_t out[16];
    static const uint8_t small[] = {4, 3, 'N', 'A', 'M', 'E', 'v', 'a', 'l'};
    assert_int_equal(fcgi_nv_size(4, 3), sizeof(small));
    assert_int_equal(fcgi_nv_encode(out, "NAME", 4, "val", 3), sizeof(small));
    assert_memory_equal(out, small, sizeof(small));

    static const uint8_t empty[] = {1, 0, 'X'};
    assert_int_equal(fcgi_nv_encode(out, "X", 1, NULL, 0), sizeof(empty));
    assert_memory_equal(out, empty, sizeof(empty));

    uint8_t *big = malloc(fcgi_nv_size(1, 100000));
    char *v = nv_fill(100000, 'a');
    assert_int_equal(fcgi_nv_encode(big, "K", 1, v, 100000), 1 + 4 + 1 + 100000);
    static const uint8_t head[] = {1, 0x80, 0x01, 0x86, 0xa0, 'K'};
    assert_memory_equal(big, head, sizeof(head));
    free(big);
    free(v);
}

static void test_nv_sizes(void **state)
{
    (void)state;
    assert_int_equal(fcgi_nv_size(0, 0), 2);
    assert_int_equal(fcgi_nv_size(127, 127), 2 + 254);
    assert_int_equal(fcgi_nv_size(128, 0), 5 + 128);
    assert_int_equal(fcgi_nv_size(0, 128), 5 + 128);
    assert_int_equal(fcgi_nv_size(0x7fffffff, 0), 5 + 0x7fffffffUL);
    assert_int_equal(fcgi_nv_size(0x80000000UL, 0), 0);
    assert_int_equal(fcgi_nv_size(0, 0x80000000UL), 0);
    uint8_t out[4] = {0};
    assert_int_equal(fcgi_nv_encode(out, "", 0x80000000UL, "", 0), 0);
}

static void test_nv_round_trip(void **state)
{
    (void)state;
    for (size_t i = 0; i < NV_NLENS; i++)
        for (size_t j = 0; j < NV_NLENS; j++) {
            size_t nl = nv_lens[i], vl = nv_lens[j];
            char *name = nv_fill(nl, 'A'), *value = nv_fill(vl, 'a');
            size_t size = fcgi_nv_size(nl, vl);
            assert_int_equal(size, (nl < 128 ? 1 : 4) + (vl < 128 ? 1 : 4) + nl + vl);
            uint8_t *buf = malloc(size);
            assert_int_equal(fcgi_nv_encode(buf, name, nl, value, vl), size);

            const uint8_t *n, *v;
            size_t dn, dv;
            assert_int_equal(fcgi_nv_decode(buf, size, &n, &dn, &v, &dv), (long)size);
            assert_int_equal(dn, nl);
            assert_int_equal(dv, vl);
            assert_memory_equal(n, name, nl);
            assert_memory_equal(v, value, vl);
            free(buf);
            free(name);
            free(value);
        }
}

/* Every proper prefix of a pair is "need more", never an error or a pair. Each
 * prefix is placed at the very end of an allocation so ASan flags any read
 * past it; only the length bytes need copying, as decode reads nothing else
 * before it knows the pair is complete. */
static void test_nv_truncated(void **state)
{
    (void)state;
    for (size_t i = 0; i < NV_NLENS; i++)
        for (size_t j = 0; j < NV_NLENS; j++) {
            size_t nl = nv_lens[i], vl = nv_lens[j];
            char *name = nv_fill(nl, 'A'), *value = nv_fill(vl, 'a');
            size_t size = fcgi_nv_size(nl, vl);
            size_t lens = size - nl - vl;
            uint8_t *buf = malloc(size), *scratch = malloc(size);
            fcgi_nv_encode(buf, name, nl, value, vl);
            for (size_t cut = 0; cut < size; cut++) {
                const uint8_t *n, *v;
                size_t dn, dv;
                uint8_t *part = scratch + size - cut;
                memcpy(part, buf, cut < lens ? cut : lens);
                long rc = fcgi_nv_decode(part, cut, &n, &dn, &v, &dv);
                if (rc != FCGI_AGAIN)
                    fail_msg("nlen %zu vlen %zu cut %zu: %ld", nl, vl, cut, rc);
            }
            free(scratch);
            free(buf);
            free(name);
            free(value);
        }
}

/* A PARAMS body is pairs back to back; a claimed length of 2^31-1 with a few
 * bytes behind it must wait, not read. */
static void test_nv_sequence(void **state)
{
    (void)state;
    uint8_t buf[64];
    size_t off = 0;
    off += fcgi_nv_encode(buf + off, "SESSIONID", 9, "abc", 3);
    off += fcgi_nv_encode(buf + off, "EVENT", 5, "1", 1);
    off += fcgi_nv_encode(buf + off, "EMPTY", 5, "", 0);
    const uint8_t *n, *v;
    size_t dn, dv, pos = 0;
    long rc = fcgi_nv_decode(buf + pos, off - pos, &n, &dn, &v, &dv);
    assert_int_equal(rc, 14);
    assert_memory_equal(n, "SESSIONID", 9);
    pos += (size_t)rc;
    rc = fcgi_nv_decode(buf + pos, off - pos, &n, &dn, &v, &dv);
    assert_int_equal(rc, 8);
    assert_memory_equal(v, "1", 1);
    pos += (size_t)rc;
    rc = fcgi_nv_decode(buf + pos, off - pos, &n, &dn, &v, &dv);
    assert_int_equal(rc, 7);
    assert_int_equal(dv, 0);
    pos += (size_t)rc;
    assert_int_equal(pos, off);
    assert_int_equal(fcgi_nv_decode(buf + pos, 0, &n, &dn, &v, &dv), FCGI_AGAIN);

    static const uint8_t huge[] = {0xff, 0xff, 0xff, 0xff, 0x01, 'a', 'b', 'c'};
    assert_int_equal(fcgi_nv_decode(huge, sizeof(huge), &n, &dn, &v, &dv), FCGI_AGAIN);
    static const uint8_t huge2[] = {0x01, 0xff, 0xff, 0xff, 0xff, 'a', 'b', 'c'};
    assert_int_equal(fcgi_nv_decode(huge2, sizeof(huge2), &n, &dn, &v, &dv), FCGI_AGAIN);
}

/* Each response is head + body; the parser must report the body at
 * strlen(head). */
enum { CGI_DONE = 1, CGI_UNFINISHED = 0 };
struct cgi_case {
    const char *head;
    const char *body;
    int want; /* CGI_DONE, CGI_UNFINISHED or FCGI_ERROR */
    int status;
    long content_length;
};

static const struct cgi_case cgi_cases[] = {
    {"Content-Type: text/plain\r\n\r\n", "hello", CGI_DONE, 200, -1},
    {"Content-Type: text/plain\n\n", "hello", CGI_DONE, 200, -1},
    {"Status: 404 Not Found\r\nContent-Type: text/html\r\n\r\n", "gone", CGI_DONE, 404, -1},
    {"status:301\nlocation: /x\n\n", "", CGI_DONE, 301, -1},
    {"Content-Length: 5\r\n\r\n", "hello", CGI_DONE, 200, 5},
    {"CONTENT-LENGTH:  12 \r\nStatus:\t599\r\n\r\n", "hello world!", CGI_DONE, 599, 12},
    {"\r\n", "body", CGI_DONE, 200, -1},
    {"\n", "body", CGI_DONE, 200, -1},
    {"X-Powered-By: PHP/8.2\r\nSet-Cookie: a=b\r\nstatus: 201 Created\r\n"
     "Content-type: text/html; charset=UTF-8\r\nContent-Length: 0\r\n\r\n",
     "", CGI_DONE, 201, 0},
    {"A: b\n\r\n", "rest", CGI_DONE, 200, -1},
    {"no colon here\r\nStatus: 100\r\n\r\n", "", CGI_DONE, 100, -1},
    {"Content-Length: 3\r\nContent-Length: 3\r\n\r\n", "abc", CGI_DONE, 200, 3},
    {"Status: 200\r\n\r\n", "\r\n\r\n", CGI_DONE, 200, -1},
    {"Status: 204\r\n", "", CGI_UNFINISHED, 204, -1},
    {"Status: 20\r\n\r\n", "", FCGI_ERROR, 0, 0},
    {"Status: 2000\r\n\r\n", "", FCGI_ERROR, 0, 0},
    {"Status: 099\r\n\r\n", "", FCGI_ERROR, 0, 0},
    {"Status: 600 Too Much\r\n\r\n", "", FCGI_ERROR, 0, 0},
    {"Status: OK\r\n\r\n", "", FCGI_ERROR, 0, 0},
    {"Status:\r\n\r\n", "", FCGI_ERROR, 0, 0},
    {"Status: 40x\r\n\r\n", "", FCGI_ERROR, 0, 0},
    {"Content-Length: -1\r\n\r\n", "", FCGI_ERROR, 0, 0},
    {"Content-Length: +5\r\n\r\n", "", FCGI_ERROR, 0, 0},
    {"Content-Length: 1a\r\n\r\n", "", FCGI_ERROR, 0, 0},
    {"Content-Length: 1 2\r\n\r\n", "", FCGI_ERROR, 0, 0},
    {"Content-Length:\r\n\r\n", "", FCGI_ERROR, 0, 0},
    {"Content-Length: 0x10\r\n\r\n", "", FCGI_ERROR, 0, 0},
    {"Content-Length: 99999999999999999999999999\r\n\r\n", "", FCGI_ERROR, 0, 0},
    {"Content-Length: 3\r\nContent-Length: 4\r\n\r\n", "", FCGI_ERROR, 0, 0},
    /* Blanks around a name, a CR that does not end its line. */
    {"Status \t: 302\r\n\r\n", "", CGI_DONE, 302, -1},
    {" Status: 302\r\n\r\n", "", CGI_DONE, 200, -1},
    {"Statuses: 302\r\n\r\n", "", CGI_DONE, 200, -1},
    {"Content-Length: 7 \t\r\nX-A: \r\r\n\r\n", "1234567", CGI_DONE, 200, 7},
    {"X: a\rb\r\nStatus: 404 \r\n\r\n", "", CGI_DONE, 404, -1},
    {"Status: 200\rx\r\n\r\n", "", FCGI_ERROR, 0, 0},
    {"Status: 200\r\r\n\r\n", "", FCGI_ERROR, 0, 0},
    {"Content-Length: 5\r\r\n\r\n", "", FCGI_ERROR, 0, 0},
    {"Content-Length: 5:\r\n\r\n", "", FCGI_ERROR, 0, 0},
    {"\r\r\n\r\n", "", CGI_DONE, 200, -1},
};
#define CGI_NCASES (sizeof(cgi_cases) / sizeof(cgi_cases[0]))

/* The sink cgi_feed gives the parser (NULL: none). */
static const struct cgi_sink *feed_sink;
static void *feed_sink_arg;

/* Feeds in[0..len) as a first chunk of first bytes (0: none) and then chunks
 * of step bytes (0: all the rest at once). Returns the body offset, -1 when the
 * header never ended, or FCGI_ERROR. */
static long cgi_feed(struct cgi_parser *cp, const char *in, size_t len, size_t first, size_t step)
{
    size_t off = 0;
    long body = -1;
    cgi_parser_init(cp);
    cp->sink = feed_sink;
    cp->sink_arg = feed_sink_arg;
    while (off < len) {
        size_t n = off == 0 && first > 0 ? first : step;
        if (n == 0 || n > len - off)
            n = len - off;
        /* Each chunk in an allocation of exactly n bytes, for ASan. */
        uint8_t *c = malloc(n);
        assert_non_null(c);
        memcpy(c, in + off, n);
        int was_done = cp->done;
        long rc = cgi_parser_feed(cp, c, n);
        free(c);
        if (rc == FCGI_ERROR)
            return FCGI_ERROR;
        assert_true(rc >= 0 && (size_t)rc <= n);
        if (was_done)
            assert_int_equal(rc, 0);
        else if (!cp->done)
            assert_int_equal(rc, (long)n);
        else
            body = (long)(off + (size_t)rc);
        off += n;
    }
    return body;
}

static void cgi_check(const struct cgi_case *tc, size_t first, size_t step)
{
    char in[256];
    int len = snprintf(in, sizeof(in), "%s%s", tc->head, tc->body);
    assert_true(len > 0 && (size_t)len < sizeof(in));
    struct cgi_parser cp;
    long body = cgi_feed(&cp, in, (size_t)len, first, step);
    long want = tc->want == CGI_DONE         ? (long)strlen(tc->head)
                : tc->want == CGI_UNFINISHED ? -1
                                             : FCGI_ERROR;
    if (body != want)
        fail_msg("\"%s\" first %zu step %zu: body at %ld, want %ld", tc->head, first, step, body,
                 want);
    if (body == FCGI_ERROR)
        return;
    assert_int_equal(cp.done, tc->want == CGI_DONE);
    assert_int_equal(cp.status, tc->status);
    assert_int_equal(cp.content_length, tc->content_length);
    assert_int_equal(cp.total, tc->want == CGI_DONE ? strlen(tc->head) : (size_t)len);
}

static void test_cgi_whole(void **state)
{
    (void)state;
    for (size_t i = 0; i < CGI_NCASES; i++)
        cgi_check(&cgi_cases[i], 0, 0);
}

static void test_cgi_split_everywhere(void **state)
{
    (void)state;
    for (size_t i = 0; i < CGI_NCASES; i++) {
        size_t len = strlen(cgi_cases[i].head) + strlen(cgi_cases[i].body);
        for (size_t at = 1; at < len; at++)
            cgi_check(&cgi_cases[i], at, 0);
    }
}

static void test_cgi_byte_at_a_time(void **state)
{
    (void)state;
    for (size_t i = 0; i < CGI_NCASES; i++)
        cgi_check(&cgi_cases[i], 0, 1);
}

static void test_cgi_after_done(void **state)
{
    (void)state;
    struct cgi_parser cp;
    cgi_parser_init(&cp);
    assert_int_equal(cp.done, 0);
    assert_int_equal(cp.status, 200);
    assert_int_equal(cp.content_length, -1);
    /* An empty STDOUT record consumes nothing and changes nothing. */
    assert_int_equal(cgi_parser_feed(&cp, (const uint8_t *)"", 0), 0);
    static const char in[] = "Status: 500\r\n\r\nStatus: 404\r\n\r\n";
    assert_int_equal(cgi_parser_feed(&cp, (const uint8_t *)in, sizeof(in) - 1), 15);
    assert_int_equal(cp.done, 1);
    assert_int_equal(cgi_parser_feed(&cp, (const uint8_t *)in, sizeof(in) - 1), 0);
    assert_int_equal(cp.status, 500);
}

/* "X-Pad: aaa\r\n" lines of at most 1000 bytes, then the blank line, so that
 * the whole header is exactly size bytes; "body" follows. */
static char *cgi_header_of_size(size_t size)
{
    char *s = malloc(size + 4);
    assert_non_null(s);
    size_t off = 0, rest = size - 2;
    while (rest > 0) {
        size_t line = rest;
        if (line > 1000)
            line = rest - 1000 >= 9 ? 1000 : rest - 9; /* the last line needs 9 */
        memcpy(s + off, "X-Pad: ", 7);
        memset(s + off + 7, 'a', line - 9);
        memcpy(s + off + line - 2, "\r\n", 2);
        off += line;
        rest -= line;
    }
    memcpy(s + off, "\r\nbody", 6);
    return s;
}

static void test_cgi_max_header(void **state)
{
    (void)state;
    struct cgi_parser cp;
    char *ok = cgi_header_of_size(CGI_MAX_HEADER);
    assert_int_equal(cgi_feed(&cp, ok, CGI_MAX_HEADER + 4, 0, 0), CGI_MAX_HEADER);
    assert_int_equal(cgi_feed(&cp, ok, CGI_MAX_HEADER + 4, 0, 1), CGI_MAX_HEADER);
    free(ok);

    char *big = cgi_header_of_size(CGI_MAX_HEADER + 1);
    assert_int_equal(cgi_feed(&cp, big, CGI_MAX_HEADER + 5, 0, 0), FCGI_ERROR);
    assert_int_equal(cgi_feed(&cp, big, CGI_MAX_HEADER + 5, 0, 1), FCGI_ERROR);
    assert_int_equal(cgi_feed(&cp, big, CGI_MAX_HEADER + 5, 8000, 0), FCGI_ERROR);
    /* Feeding on after the error stays an error, within the bound. */
    assert_int_equal(cgi_parser_feed(&cp, (const uint8_t *)"\n", 1), FCGI_ERROR);
    assert_true(cp.total <= CGI_MAX_HEADER);
    free(big);

    /* A backend that never ends its header, not even a line. */
    char *flood = malloc(CGI_MAX_HEADER);
    memset(flood, 'x', CGI_MAX_HEADER);
    cgi_parser_init(&cp);
    assert_int_equal(cgi_parser_feed(&cp, (const uint8_t *)flood, CGI_MAX_HEADER), CGI_MAX_HEADER);
    assert_int_equal(cgi_parser_feed(&cp, (const uint8_t *)flood, 1), FCGI_ERROR);
    free(flood);
}

/* Lines past CGI_MAX_LINE: skipped when the header is one we ignore, an
 * error when it is Status or Content-Length, since a cut value would be a
 * wrong one. */
static void test_cgi_long_lines(void **state)
{
    (void)state;
    char buf[4096];
    struct cgi_parser cp;

    int n = snprintf(buf, sizeof(buf), "Set-Cookie: %03000d\r\nStatus: 302\r\n\r\nB", 7);
    for (size_t step = 0; step < 3; step++) {
        assert_int_equal(cgi_feed(&cp, buf, (size_t)n, 0, step), n - 1);
        assert_int_equal(cp.status, 302);
    }
    assert_int_equal(cgi_feed(&cp, buf, (size_t)n, 1024, 0), n - 1);
    assert_int_equal(cgi_feed(&cp, buf, (size_t)n, 1025, 0), n - 1);

    /* A line of exactly CGI_MAX_LINE bytes (its CR included) is read... */
    memcpy(buf, "Status: 203 ", 12);
    memset(buf + 12, 'r', 1023 - 12);
    memcpy(buf + 1023, "\r\n\r\n", 4);
    assert_int_equal(cgi_feed(&cp, buf, 1027, 0, 0), 1027);
    assert_int_equal(cp.status, 203);
    assert_int_equal(cgi_feed(&cp, buf, 1027, 0, 1), 1027);
    assert_int_equal(cp.status, 203);

    /* ...one byte more does not. */
    memset(buf + 12, 'r', 1024 - 12);
    memcpy(buf + 1024, "\r\n\r\n", 4);
    assert_int_equal(cgi_feed(&cp, buf, 1028, 0, 0), FCGI_ERROR);
    assert_int_equal(cgi_feed(&cp, buf, 1028, 0, 1), FCGI_ERROR);

    n = snprintf(buf, sizeof(buf), "content-length: %02000d\r\n\r\n", 5);
    assert_int_equal(cgi_feed(&cp, buf, (size_t)n, 0, 0), FCGI_ERROR);
    assert_int_equal(cgi_feed(&cp, buf, (size_t)n, 0, 1), FCGI_ERROR);

    /* A header name longer than CGI_MAX_LINE cannot be Status. */
    memset(buf, 'N', 2000);
    memcpy(buf + 2000, ": v\n\n", 5);
    assert_int_equal(cgi_feed(&cp, buf, 2005, 0, 0), 2005);
    assert_int_equal(cp.status, 200);
}

/* ---- reply commands ---- */

/* A sink writing "cmd=value|" per command line ("!" before "|" when cut). */
struct cmd_out {
    char buf[1 << 17];
    size_t len;
    int open;
};
static void cmd_put(struct cmd_out *o, const void *p, size_t n)
{
    assert_true(o->len + n < sizeof(o->buf));
    memcpy(o->buf + o->len, p, n);
    o->len += n;
    o->buf[o->len] = '\0';
}
static void cmd_begin(void *arg, int cmd)
{
    struct cmd_out *o = arg;
    assert_false(o->open);
    o->open = 1;
    char t[8];
    int n = snprintf(t, sizeof(t), "%d=", cmd);
    cmd_put(o, t, (size_t)n);
}
static void cmd_data(void *arg, const uint8_t *p, size_t n)
{
    struct cmd_out *o = arg;
    assert_true(o->open);
    assert_true(n > 0);
    cmd_put(o, p, n);
}
static void cmd_end(void *arg, int cut)
{
    struct cmd_out *o = arg;
    assert_true(o->open);
    o->open = 0;
    cmd_put(o, cut ? "!|" : "|", cut ? 2 : 1);
}
static const struct cgi_sink cmd_sink = {cmd_begin, cmd_data, cmd_end};

/* cgi_feed with the sink: the body offset (or FCGI_ERROR), the commands in o. */
static long cmd_feed(struct cmd_out *o, const char *in, size_t len, size_t first, size_t step)
{
    struct cgi_parser cp;
    o->len = 0;
    o->open = 0;
    o->buf[0] = '\0';
    feed_sink = &cmd_sink;
    feed_sink_arg = o;
    long body = cgi_feed(&cp, in, len, first, step);
    feed_sink = NULL;
    return body;
}

static void test_cgi_commands(void **state)
{
    (void)state;
    static struct cmd_out o;
    const char *in = "Content-Type: text/plain\r\n"
                     "X-Fooking-Join:  a, b \r\n"
                     "x-fooking-LEAVE:c\n"
                     "X-Fooking-Bind-Uid : 42\r\n"
                     "X-Fooking-Session: {\"k\":\"v\r w\"}\r\n"
                     "X-Fooking-Publish:\r\n"
                     "X-Fooking-Exclude-Self: 1\r\n"
                     "X-Fooking-Close: 4001 bye\r\n"
                     "X-Fooking-Jion: typo\r\n"
                     "X-Fooking-A-Name-Longer-Than-Thirty-Two: v\r\n"
                     "X-Fooking: not one\r\n"
                     "Status: 200\r\n"
                     "\r\n"
                     "body";
    char want[512];
    snprintf(want, sizeof(want),
             "%d=a, b |%d=c|%d=42|%d={\"k\":\"v\r w\"}|%d=|%d=1|%d=4001 bye|%d=X-Fooking-Jion|"
             "%d=X-Fooking-A-Name-Longer-Than-Thi|",
             CGI_CMD_JOIN, CGI_CMD_LEAVE, CGI_CMD_BIND_UID, CGI_CMD_SESSION, CGI_CMD_PUBLISH,
             CGI_CMD_EXCLUDE_SELF, CGI_CMD_CLOSE, CGI_CMD_UNKNOWN, CGI_CMD_UNKNOWN);
    size_t len = strlen(in);
    long body = (long)(len - 4);
    /* The same, whole, cut at every offset, and a byte at a time. */
    assert_int_equal(cmd_feed(&o, in, len, 0, 0), body);
    assert_string_equal(o.buf, want);
    for (size_t first = 1; first < len; first++) {
        assert_int_equal(cmd_feed(&o, in, len, first, 0), body);
        assert_string_equal(o.buf, want);
    }
    assert_int_equal(cmd_feed(&o, in, len, 0, 1), body);
    assert_string_equal(o.buf, want);

    /* Without a sink, commands are headers like others. */
    struct cgi_parser cp;
    cgi_parser_init(&cp);
    assert_int_equal(cgi_parser_feed(&cp, (const uint8_t *)in, len), body);
    assert_int_equal(cp.ncmds, 0);
}

/* A command line may be up to CGI_MAX_CMD_LINE bytes (its CR included); a
 * longer one is told cut, and the header goes on. */
static void test_cgi_command_lines(void **state)
{
    (void)state;
    static struct cmd_out o;
    size_t vmax = CGI_MAX_CMD_LINE - strlen("X-Fooking-Session: ") - 1; /* the CR */
    char *in = malloc(CGI_MAX_CMD_LINE + 64);
    for (int extra = 0; extra <= 1; extra++) {
        size_t n = 0, v = vmax + (size_t)extra;
        n += (size_t)sprintf(in, "X-Fooking-Session: ");
        memset(in + n, 's', v);
        n += v;
        n += (size_t)sprintf(in + n, "\r\nX-Fooking-Join: j\r\n\r\nB");
        for (size_t step = 0; step <= 7; step += 7) {
            assert_int_equal(cmd_feed(&o, in, n, 0, step), (long)n - 1);
            char head[8];
            int hl = snprintf(head, sizeof(head), "%d=", CGI_CMD_SESSION);
            assert_memory_equal(o.buf, head, (size_t)hl);
            /* Cut: what came up to the limit is told, then "!". */
            size_t told = extra ? vmax + 1 : vmax;
            for (size_t i = 0; i < told; i++)
                if (o.buf[(size_t)hl + i] != 's')
                    fail_msg("extra %d step %zu: byte %zu is %#x", extra, step, i,
                             (unsigned char)o.buf[(size_t)hl + i]);
            char tail[32];
            snprintf(tail, sizeof(tail), "%s%d=j|", extra ? "!|" : "|", CGI_CMD_JOIN);
            assert_string_equal(o.buf + hl + told, tail);
        }
    }
    free(in);
}

static void test_cgi_cmd_lookup(void **state)
{
    (void)state;
    const struct {
        const char *name;
        int cmd;
    } cases[] = {
        {"X-Fooking-Join", CGI_CMD_JOIN},
        {"x-fooking-join", CGI_CMD_JOIN},
        {"X-FOOKING-LEAVE", CGI_CMD_LEAVE},
        {"X-Fooking-Bind-Uid", CGI_CMD_BIND_UID},
        {"X-Fooking-Unbind-Uid", CGI_CMD_UNBIND_UID},
        {"X-Fooking-Session", CGI_CMD_SESSION},
        {"X-Fooking-Publish", CGI_CMD_PUBLISH},
        {"X-Fooking-Broadcast", CGI_CMD_BROADCAST},
        {"X-Fooking-Exclude-Self", CGI_CMD_EXCLUDE_SELF},
        {"X-Fooking-Close", CGI_CMD_CLOSE},
        {"X-Fooking-", CGI_CMD_UNKNOWN},
        {"X-Fooking-Joins", CGI_CMD_UNKNOWN},
        {"X-Fooking", CGI_CMD_NONE},
        {"X-Fookin-Join", CGI_CMD_NONE},
        {"Join", CGI_CMD_NONE},
        {"", CGI_CMD_NONE},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (cgi_cmd_lookup(cases[i].name, strlen(cases[i].name)) != cases[i].cmd)
            fail_msg("%s: want %d", cases[i].name, cases[i].cmd);
    assert_string_equal(cgi_cmd_name(CGI_CMD_EXCLUDE_SELF), "X-Fooking-Exclude-Self");
    assert_string_equal(cgi_cmd_name(99), "?");
}

static void test_cgi_values(void **state)
{
    (void)state;
    /* Lists: items trimmed, empty ones skipped. */
    const char *list = " a ,b,, \t,c d ,";
    const uint8_t *p = (const uint8_t *)list, *end = p + strlen(list), *item;
    size_t n;
    const char *want[] = {"a", "b", "c d"};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(cgi_list_next(&p, end, &item, &n), 1);
        assert_int_equal(n, strlen(want[i]));
        assert_memory_equal(item, want[i], n);
    }
    assert_int_equal(cgi_list_next(&p, end, &item, &n), 0);
    assert_int_equal(cgi_list_next(&p, end, &item, &n), 0);
    p = (const uint8_t *)"";
    assert_int_equal(cgi_list_next(&p, p, &item, &n), 0);

    /* Flags. */
    const char *ones[] = {"1", " true ", "YES", "True"}, *zeros[] = {"0", "false", " No"},
               *bad[] = {"", "2", "on", "1 1", "truee"};
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(cgi_flag((const uint8_t *)ones[i], strlen(ones[i])), 1);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(cgi_flag((const uint8_t *)zeros[i], strlen(zeros[i])), 0);
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(cgi_flag((const uint8_t *)bad[i], strlen(bad[i])), -1);

    /* Close: a code a backend may send, then an optional reason. */
    int code;
    const uint8_t *reason;
    size_t rlen;
    const char *why = NULL;
    const char *v = " 4001  see you ";
    assert_int_equal(cgi_close_parse((const uint8_t *)v, strlen(v), &code, &reason, &rlen, &why),
                     FCGI_OK);
    assert_int_equal(code, 4001);
    assert_int_equal(rlen, 7);
    assert_memory_equal(reason, "see you", 7);
    assert_int_equal(cgi_close_parse((const uint8_t *)"1000", 4, &code, &reason, &rlen, &why),
                     FCGI_OK);
    assert_int_equal(code, 1000);
    assert_int_equal(rlen, 0);
    assert_int_equal(cgi_close_parse((const uint8_t *)"4999 x", 6, &code, &reason, &rlen, &why),
                     FCGI_OK);
    const char *bad_close[] = {
        "", "x", "1001", "2999", "5000", "40011", "4001x", "-4001", "1000000000000000000000"};
    for (size_t i = 0; i < sizeof(bad_close) / sizeof(bad_close[0]); i++) {
        why = NULL;
        if (cgi_close_parse((const uint8_t *)bad_close[i], strlen(bad_close[i]), &code, &reason,
                            &rlen, &why)
            != FCGI_ERROR)
            fail_msg("close \"%s\" accepted", bad_close[i]);
        assert_non_null(why);
    }
    char longr[200];
    memset(longr, 'r', sizeof(longr));
    memcpy(longr, "4000 ", 5);
    assert_int_equal(cgi_close_parse((const uint8_t *)longr, 5 + 123, &code, &reason, &rlen, &why),
                     FCGI_OK);
    assert_int_equal(rlen, 123);
    assert_int_equal(cgi_close_parse((const uint8_t *)longr, 5 + 124, &code, &reason, &rlen, &why),
                     FCGI_ERROR);

    size_t tn = 5;
    const uint8_t *t = cgi_trim((const uint8_t *)" \tab ", &tn);
    assert_int_equal(tn, 2);
    assert_memory_equal(t, "ab", 2);
    tn = 3;
    cgi_trim((const uint8_t *)"   ", &tn);
    assert_int_equal(tn, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_known_bytes),   cmocka_unit_test(test_header_round_trip),
        cmocka_unit_test(test_header_bad_version),   cmocka_unit_test(test_header_truncated),
        cmocka_unit_test(test_begin_request),        cmocka_unit_test(test_end_request),
        cmocka_unit_test(test_nv_known_bytes),       cmocka_unit_test(test_nv_sizes),
        cmocka_unit_test(test_nv_round_trip),        cmocka_unit_test(test_nv_truncated),
        cmocka_unit_test(test_nv_sequence),          cmocka_unit_test(test_cgi_whole),
        cmocka_unit_test(test_cgi_split_everywhere), cmocka_unit_test(test_cgi_byte_at_a_time),
        cmocka_unit_test(test_cgi_after_done),       cmocka_unit_test(test_cgi_max_header),
        cmocka_unit_test(test_cgi_long_lines),       cmocka_unit_test(test_cgi_commands),
        cmocka_unit_test(test_cgi_command_lines),    cmocka_unit_test(test_cgi_cmd_lookup),
        cmocka_unit_test(test_cgi_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
