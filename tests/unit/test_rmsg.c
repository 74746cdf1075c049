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

    for (int t = 1; t <= RMSG_PONG; t++) {
        /* 16 bytes of S and 8 of D is valid for every old type that has an S */
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
    assert_string_equal(rmsg_type_name(16), "BIND");
    assert_string_equal(rmsg_type_name(34), "GW_ANSWER");
    assert_string_equal(rmsg_type_name(35), "HELLO");
    assert_string_equal(rmsg_type_name(36), "?");
    for (int t = 1; t <= RMSG_TYPE_MAX; t++)
        assert_string_not_equal(rmsg_type_name(t), "?");
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
    /* Above the known types: told apart, so a reader may skip it. */
    assert_int_equal(decode_hdr(RMSG_TYPE_MAX + 1, 0, 0, MAX_LEN), RMSG_UNKNOWN);
    assert_int_equal(decode_hdr(0xffff, 3, 100, MAX_LEN), RMSG_UNKNOWN);
    /* ... but only with a D the reader would buffer. */
    assert_int_equal(decode_hdr(0xffff, 0, 101, 100), RMSG_ERR_LEN);
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
    for (int rc = RMSG_ERR_LINK_QUERY; rc <= RMSG_UNKNOWN; rc++)
        assert_string_not_equal(rmsg_strerror(rc), "unknown error");
    assert_string_equal(rmsg_strerror(-99), "unknown error");
}

/* ---- backend API v2 ---- */

static int validate(uint16_t type, const void *s, size_t slen, const void *d, size_t len)
{
    struct rmsg m = {type, (uint16_t)slen, (uint32_t)len, s, d};
    return rmsg_validate(&m);
}

#define SID16 "0123456789abcdef"

/* v2 types are framed on the header (D bounded), shaped on the body. */
static void test_v2_framing(void **state)
{
    /* S is never judged on the header for v2 types: a bad one is refused later. */
    assert_int_equal(decode_hdr(RMSG_UID_COUNT, 300, 0, MAX_LEN), RMSG_OK);
    assert_int_equal(decode_hdr(RMSG_BIND, 17, 129, MAX_LEN), RMSG_OK);
    assert_int_equal(decode_hdr(RMSG_CH_COUNT, 0, 0, MAX_LEN), RMSG_OK);
    /* A small D is read up to RMSG_MAX_REFUSED, to be refused; past it, not read. */
    assert_int_equal(decode_hdr(RMSG_BIND, 16, RMSG_MAX_REFUSED, MAX_LEN), RMSG_OK);
    assert_int_equal(decode_hdr(RMSG_BIND, 16, RMSG_MAX_REFUSED + 1, MAX_LEN), RMSG_ERR_LEN);
    assert_int_equal(decode_hdr(RMSG_IS_ONLINE, 16, RMSG_MAX_REFUSED + 1, MAX_LEN), RMSG_ERR_LEN);
    assert_int_equal(decode_hdr(RMSG_GW_QUERY, 16, 1u << 20, MAX_LEN), RMSG_ERR_LEN);
    assert_int_equal(decode_hdr(RMSG_SESSION_SET, 16, RMSG_MAX_REFUSED + 1, MAX_LEN), RMSG_ERR_LEN);
    /* Message-carrying types take the caller's maximum. */
    assert_int_equal(decode_hdr(RMSG_SEND_UID, 3, 1u << 20, MAX_LEN), RMSG_OK);
    assert_int_equal(decode_hdr(RMSG_SEND_UID, 3, 101, 100), RMSG_ERR_LEN);
    assert_int_equal(decode_hdr(RMSG_GW_ANSWER, 0, 32u << 20, MAX_LEN), RMSG_OK);
    assert_int_equal(decode_hdr(RMSG_CH_PUB_EX, 2, 1000, MAX_LEN), RMSG_OK);
    assert_int_equal(rmsg_max_len(RMSG_BIND, MAX_LEN), RMSG_MAX_REFUSED);
    assert_int_equal(rmsg_max_len(RMSG_BIND, 100), 100);
    assert_int_equal(rmsg_max_len(RMSG_SEND_ALL_EX, 1000), 1000);
}

static void test_v2_validate(void **state)
{
    unsigned char uid128[1 + 128], big[2 + RMSG_MAX_ERROR + 1];
    unsigned char sess[RMSG_MAX_SESSION + 1];

    memset(uid128, 'u', sizeof(uid128));
    uid128[0] = 128;
    memset(big, 'e', sizeof(big));
    memset(sess, 's', sizeof(sess));
    /* BIND: SIDs, uid 1..128 */
    assert_int_equal(validate(RMSG_BIND, SID16, 16, "u", 1), RMSG_OK);
    assert_int_equal(validate(RMSG_BIND, SID16 SID16, 32, uid128 + 1, 128), RMSG_OK);
    assert_int_equal(validate(RMSG_BIND, SID16, 16, uid128, 129), RMSG_ERR_UID);
    assert_int_equal(validate(RMSG_BIND, SID16, 16, "", 0), RMSG_ERR_UID);
    assert_int_equal(validate(RMSG_BIND, SID16, 15, "u", 1), RMSG_ERR_SIDS);
    assert_int_equal(validate(RMSG_BIND, "", 0, "u", 1), RMSG_OK); /* no SIDs: nothing to do */
    /* HELLO: no S, a u32 version */
    assert_int_equal(validate(RMSG_HELLO, "", 0, "\0\0\0\2", 4), RMSG_OK);
    assert_int_equal(validate(RMSG_HELLO, "", 0, "\0\0\2", 3), RMSG_ERR_D);
    assert_int_equal(validate(RMSG_HELLO, SID16, 16, "\0\0\0\2", 4), RMSG_ERR_S);
    assert_string_equal(rmsg_type_name(RMSG_HELLO), "HELLO");
    /* UNBIND: SIDs, no D */
    assert_int_equal(validate(RMSG_UNBIND, SID16, 16, NULL, 0), RMSG_OK);
    assert_int_equal(validate(RMSG_UNBIND, SID16, 16, NULL, 1), RMSG_ERR_D);
    /* SEND_UID / KICK_UID: a uid list */
    assert_int_equal(validate(RMSG_SEND_UID,
                              "\x01"
                              "a\x02"
                              "bc",
                              5, NULL, 7),
                     RMSG_OK);
    assert_int_equal(validate(RMSG_SEND_UID, uid128, sizeof(uid128), NULL, 0), RMSG_OK);
    assert_int_equal(validate(RMSG_SEND_UID, "", 0, NULL, 3), RMSG_ERR_UIDS);
    assert_int_equal(validate(RMSG_SEND_UID, "\x00", 1, NULL, 3), RMSG_ERR_UIDS);
    assert_int_equal(validate(RMSG_SEND_UID,
                              "\x01"
                              "a\x03"
                              "bc",
                              5, NULL, 3),
                     RMSG_ERR_UIDS);
    assert_int_equal(validate(RMSG_KICK_UID,
                              "\x01"
                              "a",
                              2, NULL, 0),
                     RMSG_OK);
    assert_int_equal(validate(RMSG_KICK_UID,
                              "\x01"
                              "a",
                              2, NULL, 1),
                     RMSG_ERR_D);
    {
        unsigned char u129[130];
        memset(u129, 'x', sizeof(u129));
        u129[0] = 129;
        assert_int_equal(validate(RMSG_KICK_UID, u129, sizeof(u129), NULL, 0), RMSG_ERR_UIDS);
    }
    /* SESSION_SET: one SID, data 0..RMSG_MAX_SESSION */
    assert_int_equal(validate(RMSG_SESSION_SET, SID16, 16, NULL, 0), RMSG_OK);
    assert_int_equal(validate(RMSG_SESSION_SET, SID16, 16, sess, RMSG_MAX_SESSION), RMSG_OK);
    assert_int_equal(validate(RMSG_SESSION_SET, SID16, 16, sess, RMSG_MAX_SESSION + 1), RMSG_ERR_D);
    assert_int_equal(validate(RMSG_SESSION_SET, SID16 SID16, 32, NULL, 0), RMSG_ERR_SID);
    assert_int_equal(validate(RMSG_SESSION_SET, "", 0, NULL, 0), RMSG_ERR_SID);
    /* SEND_ALL_EX: SIDs (maybe none) */
    assert_int_equal(validate(RMSG_SEND_ALL_EX, "", 0, NULL, 5), RMSG_OK);
    assert_int_equal(validate(RMSG_SEND_ALL_EX, SID16, 3, NULL, 5), RMSG_ERR_SIDS);
    /* CH_PUB_EX: u8 n | channel | SIDs */
    assert_int_equal(validate(RMSG_CH_PUB_EX, "\x04room", 5, NULL, 1), RMSG_OK);
    assert_int_equal(validate(RMSG_CH_PUB_EX, "\x04room" SID16, 21, NULL, 1), RMSG_OK);
    assert_int_equal(validate(RMSG_CH_PUB_EX, "\x04room" SID16, 20, NULL, 1), RMSG_ERR_SIDS);
    assert_int_equal(validate(RMSG_CH_PUB_EX, "\x00room", 5, NULL, 1), RMSG_ERR_CHANNEL);
    assert_int_equal(validate(RMSG_CH_PUB_EX, "\x05room", 5, NULL, 1), RMSG_ERR_CHANNEL);
    assert_int_equal(validate(RMSG_CH_PUB_EX, "", 0, NULL, 1), RMSG_ERR_CHANNEL);
    /* queries */
    assert_int_equal(validate(RMSG_IS_ONLINE, SID16 SID16, 32, NULL, 0), RMSG_OK);
    assert_int_equal(validate(RMSG_IS_ONLINE, SID16, 17, NULL, 0), RMSG_ERR_SIDS);
    assert_int_equal(validate(RMSG_IS_ONLINE, SID16, 16, "x", 1), RMSG_ERR_D);
    assert_int_equal(validate(RMSG_UID_COUNT, "u", 1, NULL, 0), RMSG_OK);
    assert_int_equal(validate(RMSG_UID_SIDS, uid128, 128, NULL, 0), RMSG_OK);
    assert_int_equal(validate(RMSG_UID_SIDS, uid128, 129, NULL, 0), RMSG_ERR_UID);
    assert_int_equal(validate(RMSG_UID_COUNT, "", 0, NULL, 0), RMSG_ERR_UID);
    assert_int_equal(validate(RMSG_SID_UID, SID16, 16, NULL, 0), RMSG_OK);
    assert_int_equal(validate(RMSG_SESSION_GET, SID16, 15, NULL, 0), RMSG_ERR_SID);
    assert_int_equal(validate(RMSG_CH_COUNT, "r", 1, NULL, 0), RMSG_OK);
    assert_int_equal(validate(RMSG_CH_MEMBERS, "", 0, NULL, 0), RMSG_ERR_CHANNEL);
    {
        unsigned char ch[256];
        memset(ch, 'c', sizeof(ch));
        assert_int_equal(validate(RMSG_CH_SESSIONS, ch, 255, NULL, 0), RMSG_OK);
        assert_int_equal(validate(RMSG_CH_SESSIONS, ch, 256, NULL, 0), RMSG_ERR_CHANNEL);
    }
    assert_int_equal(validate(RMSG_CHANNELS, "", 0, NULL, 0), RMSG_OK);
    assert_int_equal(validate(RMSG_CHANNELS, "x", 1, NULL, 0), RMSG_ERR_S);
    /* ERROR: u16 type | text */
    assert_int_equal(validate(RMSG_ERROR, "", 0, "\x00\x18", 2), RMSG_OK);
    assert_int_equal(validate(RMSG_ERROR, "", 0, "\x00", 1), RMSG_ERR_D);
    assert_int_equal(validate(RMSG_ERROR, "", 0, big, sizeof(big)), RMSG_ERR_D);
    /* GW_QUERY: SIDs, u32 id */
    assert_int_equal(validate(RMSG_GW_QUERY, SID16, 16, "\0\0\0\1", 4), RMSG_OK);
    assert_int_equal(validate(RMSG_GW_QUERY, SID16, 16, "\0\0\1", 3), RMSG_ERR_D);
    /* GW_ANSWER: id, then records */
    assert_int_equal(validate(RMSG_GW_ANSWER, "", 0, "\0\0\0\1", 4), RMSG_OK);
    assert_int_equal(validate(RMSG_GW_ANSWER, "", 0, "\0\0\0\1" SID16 "\0\0\0\2hi", 26), RMSG_OK);
    assert_int_equal(validate(RMSG_GW_ANSWER, "", 0, "\0\0\0\1" SID16 "\0\0\0\3hi", 26),
                     RMSG_ERR_RECORDS);
    assert_int_equal(validate(RMSG_GW_ANSWER, "", 0, "\0\0\0\1" SID16 "\0\0", 22),
                     RMSG_ERR_RECORDS);
    assert_int_equal(validate(RMSG_GW_ANSWER, "", 0, "\0\0\1", 3), RMSG_ERR_D);
    assert_int_equal(validate(RMSG_GW_ANSWER, "x", 1, "\0\0\0\1", 4), RMSG_ERR_S);
    /* old types: the header's checks again */
    assert_int_equal(validate(RMSG_CH_PUB, "", 0, NULL, 0), RMSG_ERR_CHANNEL);
    assert_int_equal(validate(RMSG_SEND_MSG, SID16, 16, NULL, 2), RMSG_OK);
    assert_int_equal(validate(0, "", 0, NULL, 0), RMSG_ERR_TYPE);
    assert_int_equal(rmsg_is_query(RMSG_IS_ONLINE), 1);
    assert_int_equal(rmsg_is_query(RMSG_CHANNELS), 1);
    assert_int_equal(rmsg_is_query(RMSG_ERROR), 0);
    assert_int_equal(rmsg_is_query(RMSG_INFO), 0);
}

/* A refused message is whole: rmsg_decode reports it with consumed set, and
 * the next message decodes. So does a type from the future. */
static void test_v2_decode_skips(void **state)
{
    unsigned char buf[64];
    size_t n = 0, used = 0;
    struct rmsg m;

    rmsg_encode_header(buf, RMSG_UID_COUNT, 0, 0); /* uid empty: refused */
    n += RMSG_HEADER_LEN;
    rmsg_encode_header(buf + n, 200, 2, 1); /* unknown, 3 body bytes */
    memcpy(buf + n + RMSG_HEADER_LEN, "abc", 3);
    n += RMSG_HEADER_LEN + 3;
    rmsg_encode_header(buf + n, RMSG_UID_COUNT, 2, 0);
    memcpy(buf + n + RMSG_HEADER_LEN, "42", 2);
    n += RMSG_HEADER_LEN + 2;

    assert_int_equal(rmsg_decode(buf, n, MAX_LEN, &m, &used), RMSG_ERR_UID);
    assert_int_equal(used, RMSG_HEADER_LEN);
    size_t off = used;
    used = 0;
    /* the unknown one, cut short: wait for it */
    assert_int_equal(rmsg_decode(buf + off, RMSG_HEADER_LEN + 2, MAX_LEN, &m, &used),
                     RMSG_NEED_MORE);
    assert_int_equal(used, 0);
    assert_int_equal(rmsg_decode(buf + off, n - off, MAX_LEN, &m, &used), RMSG_UNKNOWN);
    assert_int_equal(used, RMSG_HEADER_LEN + 3);
    assert_int_equal(m.type, 200);
    off += used;
    assert_int_equal(rmsg_decode(buf + off, n - off, MAX_LEN, &m, &used), RMSG_OK);
    assert_memory_equal(m.s, "42", 2);
    assert_int_equal(off + used, n);
    /* framing errors leave consumed alone */
    used = 0;
    rmsg_encode_header(buf, RMSG_BIND, 16, RMSG_MAX_REFUSED + 1);
    assert_int_equal(rmsg_decode(buf, 8, MAX_LEN, &m, &used), RMSG_ERR_LEN);
    assert_int_equal(used, 0);
}

static void test_uids_walk(void **state)
{
    static const unsigned char list[] = "\x01"
                                        "a\x03"
                                        "bcd\x01"
                                        "a";
    const unsigned char *uid;
    size_t off = 0, len;

    assert_int_equal(rmsg_uids_next(list, 8, &off, &uid, &len), 1);
    assert_int_equal(len, 1);
    assert_memory_equal(uid, "a", 1);
    assert_int_equal(rmsg_uids_next(list, 8, &off, &uid, &len), 1);
    assert_int_equal(len, 3);
    assert_memory_equal(uid, "bcd", 3);
    assert_int_equal(rmsg_uids_next(list, 8, &off, &uid, &len), 1);
    assert_int_equal(rmsg_uids_next(list, 8, &off, &uid, &len), 0);
    assert_int_equal(off, 8);
    assert_int_equal(rmsg_uids_check(list, 8), RMSG_OK);
    /* every cut but at an entry's end is malformed */
    for (size_t n = 1; n < 8; n++)
        assert_int_equal(rmsg_uids_check(list, n), n == 2 || n == 6 ? RMSG_OK : RMSG_ERR_UIDS);
    assert_int_equal(rmsg_uids_check(list, 0), RMSG_ERR_UIDS);
    off = 0;
    assert_int_equal(rmsg_uids_next((const unsigned char *)"\x00", 1, &off, &uid, &len),
                     RMSG_ERR_UIDS);
}

static void test_ch_ex_parse(void **state)
{
    struct rmsg_ch_ex ex;
    unsigned char s[1 + 255 + 32];

    memset(s, 'c', sizeof(s));
    s[0] = 255;
    assert_int_equal(rmsg_ch_ex_parse(s, sizeof(s), &ex), RMSG_OK);
    assert_int_equal(ex.chlen, 255);
    assert_ptr_equal(ex.channel, s + 1);
    assert_ptr_equal(ex.sids, s + 256);
    assert_int_equal(ex.nsids, 2);
    assert_int_equal(rmsg_ch_ex_parse(s, 256, &ex), RMSG_OK);
    assert_int_equal(ex.nsids, 0);
    assert_int_equal(rmsg_ch_ex_parse(s, 255, &ex), RMSG_ERR_CHANNEL);
    assert_int_equal(rmsg_ch_ex_parse(s, 257, &ex), RMSG_ERR_SIDS);
}

static void test_records_and_encoders(void **state)
{
    unsigned char buf[RMSG_CHANNEL_REC_MAX + RMSG_MEMBER_MAX], *p = buf;
    const unsigned char *sid, *data;
    uint32_t len;
    size_t off = 0;

    p += rmsg_encode_record_head(p, (const unsigned char *)SID16, 3);
    memcpy(p, "abc", 3);
    p += 3;
    p += rmsg_encode_record_head(p, (const unsigned char *)"fedcba9876543210", 0);
    assert_int_equal(p - buf, 2 * RMSG_RECORD_HEAD + 3);
    assert_memory_equal(buf + 16, "\0\0\0\3abc", 7);
    assert_int_equal(rmsg_records_next(buf, p - buf, &off, &sid, &data, &len), 1);
    assert_memory_equal(sid, SID16, 16);
    assert_int_equal(len, 3);
    assert_memory_equal(data, "abc", 3);
    assert_int_equal(rmsg_records_next(buf, p - buf, &off, &sid, &data, &len), 1);
    assert_int_equal(len, 0);
    assert_int_equal(rmsg_records_next(buf, p - buf, &off, &sid, &data, &len), 0);
    off = 0;
    assert_int_equal(rmsg_records_next(buf, 19, &off, &sid, &data, &len), RMSG_ERR_RECORDS);
    off = 0;
    assert_int_equal(rmsg_records_next(buf, 22, &off, &sid, &data, &len), RMSG_ERR_RECORDS);

    assert_int_equal(rmsg_encode_member(buf, (const unsigned char *)SID16, "bob", 3), 20);
    assert_memory_equal(buf,
                        SID16 "\x03"
                              "bob",
                        20);
    assert_int_equal(rmsg_encode_member(buf, (const unsigned char *)SID16, NULL, 0), 17);
    assert_int_equal(buf[16], 0);
    assert_int_equal(rmsg_encode_channel_count(buf, "room", 4, 0x01020304), 9);
    assert_memory_equal(buf, "\x04room\x01\x02\x03\x04", 9);

    {
        unsigned char msg[RMSG_ERROR_MSG_MAX];
        char text[RMSG_MAX_ERROR + 10];
        struct rmsg m;
        size_t used, n = rmsg_encode_error(msg, RMSG_UID_COUNT, "bad uid");
        assert_int_equal(n, 8 + 2 + 7);
        assert_int_equal(rmsg_decode(msg, n, MAX_LEN, &m, &used), RMSG_OK);
        assert_int_equal(m.type, RMSG_ERROR);
        assert_int_equal(rmsg_get_u16(m.d), RMSG_UID_COUNT);
        assert_memory_equal(m.d + 2, "bad uid", 7);
        memset(text, 't', sizeof(text) - 1);
        text[sizeof(text) - 1] = '\0';
        n = rmsg_encode_error(msg, 7, text);
        assert_int_equal(n, RMSG_ERROR_MSG_MAX);
        assert_int_equal(rmsg_decode(msg, n, MAX_LEN, &m, &used), RMSG_OK);
    }
}

/* A gateway's own publish: header and S, the channel of a CH_PUB_EX. */
static void test_publish_head(void **state)
{
    (void)state;
    static unsigned char out[RMSG_PUBLISH_HEAD_MAX];
    struct rmsg_ch_ex ex;
    const unsigned char s[] = "\x04room0123456789abcdef";
    size_t n = rmsg_encode_publish_head(out, RMSG_CH_PUB_EX, s, sizeof(s) - 1, 5, &ex);
    assert_int_equal(n, RMSG_HEADER_LEN + sizeof(s) - 1);
    assert_memory_equal(out, "\x00\x16\x00\x15\x00\x00\x00\x05", RMSG_HEADER_LEN);
    assert_memory_equal(out + RMSG_HEADER_LEN, s, sizeof(s) - 1);
    assert_int_equal(ex.chlen, 4);
    assert_memory_equal(ex.channel, "room", 4);
    n = rmsg_encode_publish_head(out, RMSG_SEND_ALL_EX, "0123456789abcdef", 16, 0, &ex);
    assert_int_equal(n, RMSG_HEADER_LEN + 16);
    assert_null(ex.channel);
    /* Not a CH_PUB_EX's S, S too long, D too long: nothing. */
    assert_int_equal(rmsg_encode_publish_head(out, RMSG_CH_PUB_EX,
                                              "\x09"
                                              "ab",
                                              3, 0, &ex),
                     0);
    assert_int_equal(rmsg_encode_publish_head(out, RMSG_SEND_ALL_EX, out,
                                              RMSG_PUBLISH_HEAD_MAX - RMSG_HEADER_LEN + 1, 0, &ex),
                     0);
    assert_int_equal(
        rmsg_encode_publish_head(out, RMSG_SEND_ALL_EX, "", 0, (size_t)UINT32_MAX + 1, &ex), 0);
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
        cmocka_unit_test(test_v2_framing),
        cmocka_unit_test(test_v2_validate),
        cmocka_unit_test(test_v2_decode_skips),
        cmocka_unit_test(test_uids_walk),
        cmocka_unit_test(test_ch_ex_parse),
        cmocka_unit_test(test_records_and_encoders),
        cmocka_unit_test(test_publish_head),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
