/* test_router_api.c - the HTTP API's pure half: request JSON to the exact
 * router messages (and each refusal naming its field), strict base64, and
 * answer messages to JSON. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rmsg.h"
#include "router_api.h"

#define SID_A "0123456789abcdef"
#define SID_B "fedcba9876543210"

/* Builds ep from JSON text; returns 0 or -1 (err filled). */
static int build(int ep, const char *text, struct router_api_req *r, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *args = json_loads(text, JSON_ALLOW_NUL, &jerr);
    int rc;

    assert_non_null(args);
    rc = router_api_build(ep, args, r, err, errlen);
    json_decref(args);
    return rc;
}

static void expect_msg(const struct router_api_msg *m, uint16_t type, const void *s, size_t slen,
                       const void *d, size_t dlen)
{
    assert_int_equal(m->m.type, type);
    assert_int_equal(m->m.slen, slen);
    assert_int_equal(m->m.len, dlen);
    assert_memory_equal(m->m.s, s, slen);
    if (dlen > 0)
        assert_memory_equal(m->m.d, d, dlen);
    assert_int_equal(rmsg_validate(&m->m), RMSG_OK);
}

static void expect_error(int ep, const char *text, const char *want)
{
    struct router_api_req r;
    char err[256] = "";

    if (build(ep, text, &r, err, sizeof(err)) == 0) {
        router_api_req_free(&r);
        fail_msg("%s: built, wanted \"%s\"", text, want);
    }
    if (strstr(err, want) == NULL)
        fail_msg("%s: \"%s\", wanted \"%s\"", text, err, want);
}

static void test_find(void **state)
{
    assert_int_equal(router_api_find("/api/publish"), ROUTER_API_PUBLISH);
    assert_int_equal(router_api_find("/api/channel"), ROUTER_API_CHANNEL);
    assert_int_equal(router_api_find("/api/channels"), ROUTER_API_CHANNELS);
    assert_int_equal(router_api_find("/api/"), -1);
    assert_int_equal(router_api_find("/api/publish/"), -1);
    assert_true(router_api_is_get(ROUTER_API_INFO));
    assert_false(router_api_is_get(ROUTER_API_SEND));
}

static void test_b64(void **state)
{
    unsigned char out[16];

    assert_int_equal(router_api_b64_decode("", 0, out), 0);
    assert_int_equal(router_api_b64_decode("aGk=", 4, out), 2);
    assert_memory_equal(out, "hi", 2);
    assert_int_equal(router_api_b64_decode("aGkh", 4, out), 3);
    assert_int_equal(router_api_b64_decode("AP8=", 4, out), 2);
    assert_memory_equal(out, "\x00\xff", 2);
    assert_int_equal(router_api_b64_decode("aA==", 4, out), 1);
    /* Not strict base64: a length not a multiple of 4, padding in the middle,
     * whitespace, other alphabets, bits left over after the padding. */
    assert_int_equal(router_api_b64_decode("aGk", 3, out), -1);
    assert_int_equal(router_api_b64_decode("aA==aGkh", 8, out), -1);
    assert_int_equal(router_api_b64_decode("aG k", 4, out), -1);
    assert_int_equal(router_api_b64_decode("a-_h", 4, out), -1);
    assert_int_equal(router_api_b64_decode("aGl=", 4, out), -1);
    assert_int_equal(router_api_b64_decode("aB==", 4, out), -1);
    assert_int_equal(router_api_b64_decode("a===", 4, out), -1);
    assert_int_equal(router_api_b64_decode("aG\0k", 4, out), -1);
}

static void test_publish_and_broadcast(void **state)
{
    struct router_api_req r;
    char err[256];
    unsigned char s[64];

    assert_int_equal(
        build(ROUTER_API_PUBLISH, "{\"channel\":\"room\",\"data\":\"hi\"}", &r, err, sizeof(err)),
        0);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.nanswers, 0);
    expect_msg(&r.msgs[0], RMSG_CH_PUB, "room", 4, "hi", 2);
    router_api_req_free(&r);

    /* With exclusions: CH_PUB_EX, S = u8 n | channel | SIDs (upper case folded). */
    assert_int_equal(build(ROUTER_API_PUBLISH,
                           "{\"channel\":\"room\",\"b64data\":\"AP8=\",\"exclude\":[\"" SID_A
                           "\",\"FEDCBA9876543210\"]}",
                           &r, err, sizeof(err)),
                     0);
    s[0] = 4;
    memcpy(s + 1, "room" SID_A SID_B, 4 + 32);
    expect_msg(&r.msgs[0], RMSG_CH_PUB_EX, s, 37, "\x00\xff", 2);
    router_api_req_free(&r);

    assert_int_equal(build(ROUTER_API_BROADCAST, "{\"data\":\"x\\u0000y\"}", &r, err, sizeof(err)),
                     0);
    expect_msg(&r.msgs[0], RMSG_SEND_ALL, "", 0, "x\0y", 3);
    router_api_req_free(&r);
    assert_int_equal(build(ROUTER_API_BROADCAST, "{\"data\":\"\",\"exclude\":[\"" SID_B "\"]}", &r,
                           err, sizeof(err)),
                     0);
    expect_msg(&r.msgs[0], RMSG_SEND_ALL_EX, SID_B, 16, "", 0);
    router_api_req_free(&r);
}

static void test_send_kick_members(void **state)
{
    struct router_api_req r;
    char err[256];

    /* Both sids and uids: SEND_MSG, then SEND_UID with a uid list. */
    assert_int_equal(build(ROUTER_API_SEND,
                           "{\"sids\":[\"" SID_A "\"],\"uids\":[\"alice\",\"b\"],\"data\":\"m\"}",
                           &r, err, sizeof(err)),
                     0);
    assert_int_equal(r.n, 2);
    expect_msg(&r.msgs[0], RMSG_SEND_MSG, SID_A, 16, "m", 1);
    expect_msg(&r.msgs[1], RMSG_SEND_UID,
               "\x05"
               "alice\x01"
               "b",
               8, "m", 1);
    router_api_req_free(&r);

    assert_int_equal(build(ROUTER_API_KICK, "{\"uids\":[\"u\"]}", &r, err, sizeof(err)), 0);
    assert_int_equal(r.n, 1);
    expect_msg(&r.msgs[0], RMSG_KICK_UID, "\x01u", 2, "", 0);
    router_api_req_free(&r);

    assert_int_equal(build(ROUTER_API_JOIN,
                           "{\"sids\":[\"" SID_A "\",\"" SID_B "\"],\"channel\":\"c\"}", &r, err,
                           sizeof(err)),
                     0);
    expect_msg(&r.msgs[0], RMSG_CH_ADD, SID_A SID_B, 32, "c", 1);
    router_api_req_free(&r);
    assert_int_equal(
        build(ROUTER_API_BIND, "{\"sids\":[\"" SID_A "\"],\"uid\":\"42\"}", &r, err, sizeof(err)),
        0);
    expect_msg(&r.msgs[0], RMSG_BIND, SID_A, 16, "42", 2);
    router_api_req_free(&r);
    assert_int_equal(build(ROUTER_API_UNBIND, "{\"sids\":[\"" SID_A "\"]}", &r, err, sizeof(err)),
                     0);
    expect_msg(&r.msgs[0], RMSG_UNBIND, SID_A, 16, "", 0);
    router_api_req_free(&r);
    assert_int_equal(
        build(ROUTER_API_SESSION, "{\"sid\":\"" SID_A "\",\"data\":\"\"}", &r, err, sizeof(err)),
        0);
    expect_msg(&r.msgs[0], RMSG_SESSION_SET, SID_A, 16, "", 0);
    router_api_req_free(&r);
}

static void test_queries(void **state)
{
    struct router_api_req r;
    char err[256];

    assert_int_equal(build(ROUTER_API_ONLINE,
                           "{\"sid\":[\"" SID_A "\",\"" SID_B "\"],\"uid\":[\"a\",\"bb\"]}", &r,
                           err, sizeof(err)),
                     0);
    assert_int_equal(r.n, 3);
    assert_int_equal(r.nanswers, 3);
    expect_msg(&r.msgs[0], RMSG_IS_ONLINE, SID_A SID_B, 32, "", 0);
    expect_msg(&r.msgs[1], RMSG_UID_SIDS, "a", 1, "", 0);
    expect_msg(&r.msgs[2], RMSG_UID_SIDS, "bb", 2, "", 0);
    router_api_req_free(&r);

    assert_int_equal(build(ROUTER_API_CHANNEL, "{\"name\":[\"room\"],\"sessions\":[\"1\"]}", &r,
                           err, sizeof(err)),
                     0);
    assert_int_equal(r.n, 2);
    assert_true(r.sessions);
    expect_msg(&r.msgs[0], RMSG_CH_MEMBERS, "room", 4, "", 0);
    expect_msg(&r.msgs[1], RMSG_CH_SESSIONS, "room", 4, "", 0);
    router_api_req_free(&r);
}

static void test_refusals_name_the_field(void **state)
{
    expect_error(ROUTER_API_PUBLISH, "[]", "the body must be a JSON object");
    expect_error(ROUTER_API_PUBLISH, "{\"data\":\"x\"}", "channel: missing");
    expect_error(ROUTER_API_PUBLISH, "{\"channel\":\"r\",\"b64data\":\"eA\"}",
                 "b64data: not valid");
    expect_error(ROUTER_API_PUBLISH,
                 "{\"channel\":\"r\",\"data\":\"x\",\"exclude\":[\"" SID_A
                 "\",\"0123456789abcdeX\"]}",
                 "exclude[1]: a SID is 16 hex");
    expect_error(ROUTER_API_SEND, "{\"data\":\"x\",\"sids\":[]}", "sids, uids: give at least");
    expect_error(ROUTER_API_SEND, "{\"sids\":[\"" SID_A "\"]}", "data: missing");
    expect_error(ROUTER_API_KICK, "{\"uids\":[1]}", "uids[0]: must be a string");
    expect_error(ROUTER_API_JOIN, "{\"sids\":[\"" SID_A "\"],\"channel\":\"\"}",
                 "channel: must be 1 to 255");
    expect_error(ROUTER_API_BIND, "{\"sids\":[\"" SID_A "\"]}", "uid: missing");
    expect_error(ROUTER_API_SESSION, "{\"sid\":[\"" SID_A "\"],\"data\":\"\"}", "sid: a SID");
    expect_error(ROUTER_API_ONLINE, "{}", "sid, uid: give at least one");
    expect_error(ROUTER_API_CHANNEL, "{}", "name: missing");
    expect_error(ROUTER_API_CHANNEL, "{\"name\":[\"r\"],\"sessions\":[\"2\"]}", "sessions:");
}

static void test_send_too_many(void **state)
{
    /* 4096 SIDs: one past what a message carries. */
    size_t n = 4096, len = 64 + n * 19;
    char *text = malloc(len), *p = text;

    assert_non_null(text);
    p += sprintf(p, "{\"data\":\"x\",\"sids\":[");
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, "%s\"%s\"", i ? "," : "", SID_A);
    sprintf(p, "]}");
    expect_error(ROUTER_API_SEND, text, "sids: at most 4095 entries");
    free(text);
}

/* A whole answer message of type with D = d[0..n). */
static size_t answer(unsigned char *out, uint16_t type, const void *d, size_t n)
{
    rmsg_encode_header(out, type, 0, (uint32_t)n);
    memcpy(out + RMSG_HEADER_LEN, d, n);
    return RMSG_HEADER_LEN + n;
}

static void test_render(void **state)
{
    struct router_api_req r;
    unsigned char a0[256], a1[256];
    const unsigned char *ans[2] = {a0, a1};
    size_t len[2];
    char err[256], *text;
    int status = 0;
    json_t *o;
    static const char info[] = "clients: 3\r\nchannels: 1\r\nuids: 2\r\n"
                               "gateway: 1\t0\t2\t1\r\ngateway: 1\t1\t1\t0\r\n";

    assert_int_equal(build(ROUTER_API_INFO, "{}", &r, err, sizeof(err)), 0);
    len[0] = answer(a0, RMSG_INFO, info, sizeof(info) - 1);
    o = router_api_render(&r, ans, len, &status, err, sizeof(err));
    assert_non_null(o);
    text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(text, "{\"channels\":1,\"clients\":3,\"gateways\":[{\"channels\":1,"
                              "\"clients\":2,\"server_id\":1,\"worker_id\":0},{\"channels\":0,"
                              "\"clients\":1,\"server_id\":1,\"worker_id\":1}],\"uids\":2}");
    free(text);
    json_decref(o);

    /* An ERROR answer: its text, and the status that goes with it. */
    len[0] = answer(a0, RMSG_ERROR,
                    "\x00\x0c"
                    "the bus is not connected",
                    26);
    assert_null(router_api_render(&r, ans, len, &status, err, sizeof(err)));
    assert_int_equal(status, 503);
    assert_string_equal(err, "the bus is not connected");
    len[0] = answer(a0, RMSG_CHANNELS, "", 0);
    assert_null(router_api_render(&r, ans, len, &status, err, sizeof(err)));
    assert_int_equal(status, 500);
    router_api_req_free(&r);

    /* A channel's members (one bound, one not) and their session data. */
    assert_int_equal(build(ROUTER_API_CHANNEL, "{\"name\":[\"room\"],\"sessions\":[\"1\"]}", &r,
                           err, sizeof(err)),
                     0);
    len[0] = answer(a0, RMSG_CH_MEMBERS,
                    SID_A "\x03"
                          "bob" SID_B "\x00",
                    16 + 4 + 16 + 1);
    len[1] = answer(a1, RMSG_CH_SESSIONS, SID_B "\x00\x00\x00\x02\xff\x00", 16 + 4 + 2);
    o = router_api_render(&r, ans, len, &status, err, sizeof(err));
    assert_non_null(o);
    text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(text, "{\"count\":2,\"members\":[{\"session\":null,\"sid\":\"" SID_A
                              "\",\"uid\":\"bob\"},{\"b64session\":\"/wA=\",\"sid\":\"" SID_B
                              "\",\"uid\":null}],\"name\":\"room\"}");
    free(text);
    json_decref(o);
    router_api_req_free(&r);

    /* Channels: name -> members; a name that is not UTF-8 under b64channels. */
    assert_int_equal(build(ROUTER_API_CHANNELS, "{}", &r, err, sizeof(err)), 0);
    len[0] = answer(a0, RMSG_CHANNELS,
                    "\x01"
                    "a\x00\x00\x00\x05\x01\xff\x00\x00\x00\x01",
                    12);
    o = router_api_render(&r, ans, len, &status, err, sizeof(err));
    assert_non_null(o);
    text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(text, "{\"b64channels\":{\"/w==\":1},\"channels\":{\"a\":5}}");
    free(text);
    json_decref(o);
    router_api_req_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find),
        cmocka_unit_test(test_b64),
        cmocka_unit_test(test_publish_and_broadcast),
        cmocka_unit_test(test_send_kick_members),
        cmocka_unit_test(test_queries),
        cmocka_unit_test(test_refusals_name_the_field),
        cmocka_unit_test(test_send_too_many),
        cmocka_unit_test(test_render),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
