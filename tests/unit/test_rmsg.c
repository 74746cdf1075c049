/* test_rmsg.c - router message codec: known bytes, truncation at every position,
 * and each error the decoder reports. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "rmsg.h"

#define MAX_LEN (64u << 20)

/* SEND_MSG to two SIDs with D = "hi" */
static const unsigned char send_msg[] = "\x00\x05\x00\x20\x00\x00\x00\x02"
                                        "0000000000000001"
                                        "00000000000000ff"
                                        "hi";

static void test_decode_known(void **state)
{
    struct rmsg m;
    size_t used = 0;

    assert_int_equal(rmsg_decode(send_msg, sizeof(send_msg) - 1, MAX_LEN, &m, &used), RMSG_OK);
    assert_int_equal(m.type, RMSG_SEND_MSG);
    assert_int_equal(m.slen, 32);
    assert_int_equal(m.len, 2);
    assert_int_equal(used, sizeof(send_msg) - 1);
    assert_ptr_equal(m.s, send_msg + 8);
    assert_ptr_equal(m.d, send_msg + 40);
    assert_memory_equal(m.s + 16, "00000000000000ff", 16);
    assert_memory_equal(m.d, "hi", 2);
    assert_int_equal(rmsg_size(&m), 42);
}

static void test_decode_trailing_bytes(void **state)
{
    /* Two messages back to back: the first decodes alone, consumed stops at it. */
    unsigned char buf[2 * (sizeof(send_msg) - 1)];
    struct rmsg m;
    size_t used = 0;

    memcpy(buf, send_msg, sizeof(send_msg) - 1);
    memcpy(buf + sizeof(send_msg) - 1, send_msg, sizeof(send_msg) - 1);
    assert_int_equal(rmsg_decode(buf, sizeof(buf), MAX_LEN, &m, &used), RMSG_OK);
    assert_int_equal(used, sizeof(send_msg) - 1);
    assert_int_equal(rmsg_decode(buf + used, sizeof(buf) - used, MAX_LEN, &m, &used), RMSG_OK);
}

static void test_truncation(void **state)
{
    struct rmsg m;
    size_t used = 12345;

    for (size_t n = 0; n < sizeof(send_msg) - 1; n++) {
        assert_int_equal(rmsg_decode(send_msg, n, MAX_LEN, &m, &used), RMSG_NEED_MORE);
        assert_int_equal(used, 12345);
        assert_int_equal(rmsg_decode_header(send_msg, n, MAX_LEN, &m),
                         n < RMSG_HEADER_LEN ? RMSG_NEED_MORE : RMSG_OK);
    }
}

static void test_encode_header(void **state)
{
    unsigned char h[RMSG_HEADER_LEN];

    rmsg_encode_header(h, RMSG_SEND_MSG, 32, 2);
    assert_memory_equal(h, send_msg, RMSG_HEADER_LEN);
    rmsg_encode_header(h, 0xfffe, 0xabcd, 0x01020304);
    assert_memory_equal(h, "\xff\xfe\xab\xcd\x01\x02\x03\x04", 8);
}

/* Types whose S must be empty. */
static int no_s(int t)
{
    return t == RMSG_AUTH || t == RMSG_SECRET || t == RMSG_PING || t == RMSG_PONG;
}

static void test_roundtrip_all_types(void **state)
{
    unsigned char buf[RMSG_HEADER_LEN + 16 + 8];
    struct rmsg m;
    size_t used;

    for (int t = 1; t <= RMSG_TYPE_MAX; t++) {
        /* 16 bytes of S and 8 of D is valid for every type that has an S */
        uint16_t slen = no_s(t) ? 0 : 16;
        rmsg_encode_header(buf, (uint16_t)t, slen, 8);
        memset(buf + 8, 'a', 24);
        assert_int_equal(rmsg_decode(buf, RMSG_HEADER_LEN + slen + 8u, MAX_LEN, &m, &used),
                         RMSG_OK);
        assert_int_equal(m.type, t);
        assert_int_equal(used, RMSG_HEADER_LEN + slen + 8u);
        assert_string_not_equal(rmsg_type_name(t), "?");
    }
    assert_string_equal(rmsg_type_name(RMSG_CH_PUB), "CH_PUB");
    assert_string_equal(rmsg_type_name(0), "?");
    assert_string_equal(rmsg_type_name(RMSG_PING), "PING");
    assert_string_equal(rmsg_type_name(RMSG_PONG), "PONG");
    assert_int_equal(RMSG_PING, 14);
    assert_int_equal(RMSG_PONG, 15);
    assert_string_equal(rmsg_type_name(16), "?");
}

static int decode_hdr(uint16_t type, uint16_t slen, uint32_t len, uint32_t max)
{
    unsigned char h[RMSG_HEADER_LEN];
    struct rmsg m;

    rmsg_encode_header(h, type, slen, len);
    return rmsg_decode_header(h, sizeof(h), max, &m);
}

static void test_err_type(void **state)
{
    assert_int_equal(decode_hdr(0, 0, 0, MAX_LEN), RMSG_ERR_TYPE);
    assert_int_equal(decode_hdr(16, 0, 0, MAX_LEN), RMSG_ERR_TYPE);
    assert_int_equal(decode_hdr(0xffff, 0, 0, MAX_LEN), RMSG_ERR_TYPE);
    assert_int_equal(decode_hdr(RMSG_SECRET, 0, 6, MAX_LEN), RMSG_OK);
}

static void test_err_len(void **state)
{
    assert_int_equal(decode_hdr(RMSG_SEND_ALL, 0, 100, 100), RMSG_OK);
    assert_int_equal(decode_hdr(RMSG_SEND_ALL, 0, 101, 100), RMSG_ERR_LEN);
    assert_int_equal(decode_hdr(RMSG_SEND_ALL, 0, 0xffffffffu, MAX_LEN), RMSG_ERR_LEN);
    /* Checked from the header alone: a body that never comes is never waited for. */
    unsigned char h[RMSG_HEADER_LEN];
    struct rmsg m;
    size_t used;
    rmsg_encode_header(h, RMSG_SEND_ALL, 0, 0xffffffffu);
    assert_int_equal(rmsg_decode(h, sizeof(h), MAX_LEN, &m, &used), RMSG_ERR_LEN);
}

/* What an unauthenticated peer may send is capped by type, whatever the
 * caller's maximum: the router buffers no more than AUTH with the longest
 * secret before it trusts a peer. */
static void test_auth_secret_caps(void **state)
{
    assert_int_equal(decode_hdr(RMSG_AUTH, 0, RMSG_AUTH_LEN + RMSG_MAX_SECRET, MAX_LEN), RMSG_OK);
    assert_int_equal(decode_hdr(RMSG_AUTH, 0, RMSG_AUTH_LEN + RMSG_MAX_SECRET + 1, MAX_LEN),
                     RMSG_ERR_LEN);
    assert_int_equal(decode_hdr(RMSG_AUTH, 0, 32u << 20, MAX_LEN), RMSG_ERR_LEN);
    assert_int_equal(decode_hdr(RMSG_SECRET, 0, RMSG_MAX_SECRET, MAX_LEN), RMSG_OK);
    assert_int_equal(decode_hdr(RMSG_SECRET, 0, RMSG_MAX_SECRET + 1, MAX_LEN), RMSG_ERR_LEN);
    /* S carries nothing for them, so it may not carry bytes to buffer either. */
    assert_int_equal(decode_hdr(RMSG_AUTH, 1, RMSG_AUTH_LEN, MAX_LEN), RMSG_ERR_S);
    assert_int_equal(decode_hdr(RMSG_SECRET, 0xffff, 4, MAX_LEN), RMSG_ERR_S);
    /* The caller's maximum still applies when it is lower. */
    assert_int_equal(decode_hdr(RMSG_SECRET, 0, 10, 9), RMSG_ERR_LEN);
    assert_int_equal(rmsg_max_len(RMSG_SEND_ALL, 1000), 1000);
    assert_int_equal(rmsg_max_len(RMSG_SECRET, 1000), RMSG_MAX_SECRET);
    assert_string_not_equal(rmsg_strerror(RMSG_ERR_S), "unknown error");
}

/* PING and PONG: no S, a token of at most RMSG_MAX_PING bytes. */
static void test_ping_pong(void **state)
{
    static const unsigned char ping[] = {0, 14, 0, 0, 0, 0, 0, 0};
    struct rmsg m;
    size_t used;

    assert_int_equal(rmsg_decode(ping, sizeof(ping), MAX_LEN, &m, &used), RMSG_OK);
    assert_int_equal(m.type, RMSG_PING);
    assert_int_equal(used, 8);
    assert_int_equal(decode_hdr(RMSG_PONG, 0, RMSG_MAX_PING, MAX_LEN), RMSG_OK);
    assert_int_equal(decode_hdr(RMSG_PONG, 0, RMSG_MAX_PING + 1, MAX_LEN), RMSG_ERR_LEN);
    assert_int_equal(decode_hdr(RMSG_PING, 16, 0, MAX_LEN), RMSG_ERR_S);
}

static void test_escape(void **state)
{
    char out[RMSG_ESCAPE_MAX];
    unsigned char all[RMSG_MAX_CHANNEL];

    assert_string_equal(rmsg_escape("room-1", 6, out, sizeof(out)), "room-1");
    assert_string_equal(rmsg_escape("a\nb\x1b[2J\\\x7f\xc3\xa9", 11, out, sizeof(out)),
                        "a\\x0ab\\x1b[2J\\\\\\x7f\\xc3\\xa9");
    assert_string_equal(rmsg_escape("a\0b", 3, out, sizeof(out)), "a\\x00b");
    assert_string_equal(rmsg_escape("", 0, out, sizeof(out)), "");
    /* The longest channel, every byte escaped, fits RMSG_ESCAPE_MAX exactly. */
    memset(all, 0xff, sizeof(all));
    rmsg_escape(all, sizeof(all), out, sizeof(out));
    assert_int_equal(strlen(out), 4 * RMSG_MAX_CHANNEL);
    /* Too small a buffer: cut short, marked, terminated. */
    assert_string_equal(rmsg_escape("abcdefghij", 10, out, 8), "abcd...");
    assert_string_equal(rmsg_escape("\x01\x02\x03", 3, out, 8), "\\x01...");
    assert_string_equal(rmsg_escape("abc", 3, out, 4), "abc");
}

static void test_err_sids(void **state)
{
    static const uint16_t sid_types[] = {RMSG_CONN,     RMSG_CLOSE,  RMSG_KICK,
                                         RMSG_SEND_MSG, RMSG_CH_ADD, RMSG_CH_DEL};
    for (size_t i = 0; i < sizeof(sid_types) / sizeof(sid_types[0]); i++) {
        uint16_t t = sid_types[i];
        uint32_t len = (t == RMSG_CH_ADD || t == RMSG_CH_DEL) ? 4 : 0;
        assert_int_equal(decode_hdr(t, 0, len, MAX_LEN), RMSG_OK);
        assert_int_equal(decode_hdr(t, 16 * RMSG_MAX_SIDS, len, MAX_LEN), RMSG_OK);
        assert_int_equal(decode_hdr(t, 15, len, MAX_LEN), RMSG_ERR_SIDS);
        assert_int_equal(decode_hdr(t, 17, len, MAX_LEN), RMSG_ERR_SIDS);
        assert_int_equal(decode_hdr(t, 0xffff, len, MAX_LEN), RMSG_ERR_SIDS);
    }
    /* S of other types is not a SID list */
    assert_int_equal(decode_hdr(RMSG_SEND_ALL, 5, 0, MAX_LEN), RMSG_OK);
}

static void test_err_channel(void **state)
{
    /* channel in S */
    static const uint16_t s_types[] = {RMSG_CH_PUB, RMSG_CH_SUB, RMSG_CH_UNSUB};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(decode_hdr(s_types[i], 1, 0, MAX_LEN), RMSG_OK);
        assert_int_equal(decode_hdr(s_types[i], 255, 0, MAX_LEN), RMSG_OK);
        assert_int_equal(decode_hdr(s_types[i], 0, 0, MAX_LEN), RMSG_ERR_CHANNEL);
        assert_int_equal(decode_hdr(s_types[i], 256, 0, MAX_LEN), RMSG_ERR_CHANNEL);
    }
    /* channel in D */
    assert_int_equal(decode_hdr(RMSG_CH_ADD, 16, 0, MAX_LEN), RMSG_ERR_CHANNEL);
    assert_int_equal(decode_hdr(RMSG_CH_DEL, 16, 256, MAX_LEN), RMSG_ERR_CHANNEL);
    assert_int_equal(decode_hdr(RMSG_CH_DEL, 16, 255, MAX_LEN), RMSG_OK);
}

static void test_err_auth(void **state)
{
    assert_int_equal(decode_hdr(RMSG_AUTH, 0, 7, MAX_LEN), RMSG_ERR_AUTH);
    assert_int_equal(decode_hdr(RMSG_AUTH, 0, 8, MAX_LEN), RMSG_OK);
    assert_int_equal(decode_hdr(RMSG_AUTH, 0, 40, MAX_LEN), RMSG_OK);
}

static void test_strerror(void **state)
{
    for (int rc = -5; rc <= 1; rc++)
        assert_string_not_equal(rmsg_strerror(rc), "unknown error");
    assert_string_equal(rmsg_strerror(-99), "unknown error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_known),
        cmocka_unit_test(test_decode_trailing_bytes),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_encode_header),
        cmocka_unit_test(test_roundtrip_all_types),
        cmocka_unit_test(test_err_type),
        cmocka_unit_test(test_err_len),
        cmocka_unit_test(test_auth_secret_caps),
        cmocka_unit_test(test_ping_pong),
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_err_sids),
        cmocka_unit_test(test_err_channel),
        cmocka_unit_test(test_err_auth),
        cmocka_unit_test(test_strerror),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
