/* test_natsq.c - the NATS bus's pure parts: the query answers' sum (natsq.c),
 * subject escaping and BUS URL checks (nbus.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "natsq.h"
#include "nbus.h"
#include "rmsg.h"

#define SID_A "0123456789abcdef"
#define SID_B "fedcba9876543210"

/* The answer of merging parts[] (n of them, each d/len; status OK). */
static int result(struct natsq_merge *m, struct evbuffer *out)
{
    int rc = natsq_merge_result(m, out);
    evbuffer_pullup(out, -1);
    return rc;
}

static void expect_buf(struct evbuffer *out, const void *want, size_t n)
{
    assert_int_equal(evbuffer_get_length(out), n);
    if (n)
        assert_memory_equal(evbuffer_pullup(out, -1), want, n);
}

static void test_answer_s(void **state)
{
    (void)state;
    unsigned char s[NATSQ_ANSWER_S];
    unsigned server, worker;
    int status;
    natsq_answer_s(s, 8191, 31, NATSQ_OVER);
    assert_int_equal(natsq_answer_s_parse(s, sizeof(s), &server, &worker, &status), 0);
    assert_int_equal(server, 8191);
    assert_int_equal(worker, 31);
    assert_int_equal(status, NATSQ_OVER);
    assert_int_equal(natsq_answer_s_parse(s, 3, &server, &worker, &status), -1);
    s[3] = 2;
    assert_int_equal(natsq_answer_s_parse(s, sizeof(s), &server, &worker, &status), -1);
}

static void test_counts_and_online(void **state)
{
    (void)state;
    struct evbuffer *out = evbuffer_new();
    unsigned char a[4], b[4];
    rmsg_put_u32(a, 2);
    rmsg_put_u32(b, 3);
    struct natsq_merge *m = natsq_merge_new(RMSG_UID_COUNT, 1 << 20, 0);
    assert_int_equal(natsq_merge_add(m, 1, 0, NATSQ_OK, a, 4), 0);
    assert_int_equal(natsq_merge_add(m, 1, 1, NATSQ_OK, b, 4), 0);
    assert_int_equal(natsq_merge_add(m, 1, 1, NATSQ_OK, b, 3), -1); /* malformed: ignored */
    assert_int_equal(result(m, out), 0);
    rmsg_put_u32(a, 5);
    expect_buf(out, a, 4);
    natsq_merge_free(m);
    evbuffer_drain(out, evbuffer_get_length(out));

    m = natsq_merge_new(RMSG_IS_ONLINE, 1 << 20, 3);
    assert_int_equal(natsq_merge_add(m, 1, 0, NATSQ_OK, (const unsigned char *)"\1\0\0", 3), 0);
    assert_int_equal(natsq_merge_add(m, 2, 0, NATSQ_OK, (const unsigned char *)"\0\0\1", 3), 0);
    assert_int_equal(natsq_merge_add(m, 2, 1, NATSQ_OK, (const unsigned char *)"\1\1", 2), -1);
    assert_int_equal(result(m, out), 0);
    expect_buf(out, "\1\0\1", 3);
    natsq_merge_free(m);
    evbuffer_free(out);
}

static void test_first_found(void **state)
{
    (void)state;
    struct evbuffer *out = evbuffer_new();
    struct natsq_merge *m = natsq_merge_new(RMSG_SESSION_GET, 1 << 20, 1);
    assert_int_equal(natsq_merge_add(m, 1, 0, NATSQ_OK, (const unsigned char *)"\0", 1), 0);
    assert_int_equal(natsq_merge_add(m, 1, 1, NATSQ_OK, (const unsigned char *)"\1data", 5), 0);
    assert_int_equal(natsq_merge_add(m, 2, 0, NATSQ_OK, (const unsigned char *)"\0x", 2), -1);
    assert_int_equal(result(m, out), 0);
    expect_buf(out, "\1data", 5);
    natsq_merge_free(m);
    evbuffer_drain(out, evbuffer_get_length(out));

    /* Nobody has it: not found, no data. */
    m = natsq_merge_new(RMSG_SESSION_GET, 1 << 20, 1);
    assert_int_equal(result(m, out), 0);
    expect_buf(out, "\0", 1);
    natsq_merge_free(m);
    evbuffer_drain(out, evbuffer_get_length(out));

    m = natsq_merge_new(RMSG_SID_UID, 1 << 20, 1);
    assert_int_equal(natsq_merge_add(m, 1, 0, NATSQ_OK, NULL, 0), 0);
    assert_int_equal(natsq_merge_add(m, 1, 1, NATSQ_OK, (const unsigned char *)"alice", 5), 0);
    assert_int_equal(result(m, out), 0);
    expect_buf(out, "alice", 5);
    natsq_merge_free(m);
    evbuffer_free(out);
}

static void test_joined_and_max(void **state)
{
    (void)state;
    struct evbuffer *out = evbuffer_new();
    struct natsq_merge *m = natsq_merge_new(RMSG_UID_SIDS, 32, 0);
    assert_int_equal(natsq_merge_add(m, 1, 0, NATSQ_OK, (const unsigned char *)SID_A, 16), 0);
    assert_int_equal(natsq_merge_add(m, 1, 1, NATSQ_OK, (const unsigned char *)SID_B, 16), 0);
    assert_int_equal(natsq_merge_add(m, 1, 1, NATSQ_OK, (const unsigned char *)SID_B, 15), -1);
    assert_int_equal(result(m, out), 0);
    expect_buf(out, SID_A SID_B, 32);
    natsq_merge_free(m);
    evbuffer_drain(out, evbuffer_get_length(out));

    /* One more SID passes the maximum. */
    m = natsq_merge_new(RMSG_UID_SIDS, 32, 0);
    assert_int_equal(natsq_merge_add(m, 1, 0, NATSQ_OK, (const unsigned char *)SID_A SID_B, 32), 0);
    assert_int_equal(natsq_merge_add(m, 1, 1, NATSQ_OK, (const unsigned char *)SID_A, 16), 0);
    assert_int_equal(result(m, out), 1);
    natsq_merge_free(m);

    /* A worker said its part alone is over. */
    m = natsq_merge_new(RMSG_CH_MEMBERS, 1 << 20, 0);
    assert_int_equal(natsq_merge_add(m, 1, 0, NATSQ_OVER, NULL, 0), 0);
    assert_int_equal(result(m, out), 1);
    natsq_merge_free(m);
    evbuffer_free(out);
}

static void test_channels_added_by_name(void **state)
{
    (void)state;
    unsigned char p1[2 * RMSG_CHANNEL_REC_MAX], p2[2 * RMSG_CHANNEL_REC_MAX];
    unsigned char want[2 * RMSG_CHANNEL_REC_MAX];
    size_t n1 = 0, n2 = 0, nw = 0;
    n1 += rmsg_encode_channel_count(p1 + n1, "room", 4, 2);
    n1 += rmsg_encode_channel_count(p1 + n1, "a.b", 3, 1);
    n2 += rmsg_encode_channel_count(p2 + n2, "room", 4, 3);
    nw += rmsg_encode_channel_count(want + nw, "room", 4, 5);
    nw += rmsg_encode_channel_count(want + nw, "a.b", 3, 1);
    struct evbuffer *out = evbuffer_new();
    struct natsq_merge *m = natsq_merge_new(RMSG_CHANNELS, 1 << 20, 0);
    assert_int_equal(natsq_merge_add(m, 1, 0, NATSQ_OK, p1, n1), 0);
    assert_int_equal(natsq_merge_add(m, 2, 0, NATSQ_OK, p2, n2), 0);
    assert_int_equal(natsq_merge_add(m, 2, 1, NATSQ_OK, p2, n2 - 1), -1); /* cut short */
    assert_int_equal(result(m, out), 0);
    /* Order is the map's: compare as a set of records. */
    assert_int_equal(evbuffer_get_length(out), nw);
    const unsigned char *got = evbuffer_pullup(out, -1);
    size_t first = 1 + got[0] + 4;
    if (got[0] == 4) {
        assert_memory_equal(got, want, nw);
    } else {
        assert_memory_equal(got, want + 9, first);
        assert_memory_equal(got + first, want, 9);
    }
    natsq_merge_free(m);
    evbuffer_free(out);
}

static size_t info_part(unsigned char *p, uint32_t clients, const char **ch, int nch,
                        const char **uids, int nu, int names)
{
    size_t n = NATSQ_INFO_HEAD;
    rmsg_put_u32(p, clients);
    rmsg_put_u32(p + 4, (uint32_t)nch);
    rmsg_put_u32(p + 8, (uint32_t)nu);
    p[12] = (unsigned char)names;
    for (int i = 0; names && i < nch + nu; i++) {
        const char *s = i < nch ? ch[i] : uids[i - nch];
        p[n++] = (unsigned char)strlen(s);
        memcpy(p + n, s, strlen(s));
        n += strlen(s);
    }
    return n;
}

static void test_info(void **state)
{
    (void)state;
    unsigned char p[256];
    const char *ch1[] = {"room", "x"}, *ch2[] = {"room"}, *u1[] = {"alice"},
               *u2[] = {"alice", "bob"};
    struct evbuffer *out = evbuffer_new();
    struct natsq_merge *m = natsq_merge_new(RMSG_INFO, 1 << 20, 0);
    assert_int_equal(natsq_merge_add(m, 2, 1, NATSQ_OK, p, info_part(p, 3, ch2, 1, u2, 2, 1)), 0);
    assert_int_equal(natsq_merge_add(m, 1, 0, NATSQ_OK, p, info_part(p, 4, ch1, 2, u1, 1, 1)), 0);
    /* Too many names to send: its counts are added. */
    assert_int_equal(natsq_merge_add(m, 1, 1, NATSQ_OK, p, info_part(p, 1, ch1, 2, u1, 1, 0)), 0);
    size_t n = info_part(p, 1, ch1, 2, u1, 1, 1);
    assert_int_equal(natsq_merge_add(m, 3, 0, NATSQ_OK, p, n - 1), -1);
    assert_int_equal(result(m, out), 0);
    const char *want = "clients: 8\r\nchannels: 4\r\nuids: 3\r\n"
                       "gateway: 1\t0\t4\t2\r\n"
                       "gateway: 1\t1\t1\t2\r\n"
                       "gateway: 2\t1\t3\t1\r\n";
    expect_buf(out, want, strlen(want));
    natsq_merge_free(m);
    evbuffer_free(out);
}

static void test_subject_escaping(void **state)
{
    (void)state;
    char s[NBUS_SUBJECT_MAX];
    assert_int_equal(nbus_subject_for("fk.", s, "all", NULL, 0), 6);
    assert_string_equal(s, "fk.all");
    nbus_subject_for("fk.", s, "ch.", "a.b *>%\xe9_-Z9", 12);
    assert_string_equal(s, "fk.ch.a%2Eb%20%2A%3E%25%E9_-Z9");
    nbus_subject_for("fk.", s, "ch.", "", 0);
    assert_string_equal(s, "fk.ch.%");
    char name[RMSG_MAX_CHANNEL];
    memset(name, '\n', sizeof(name));
    size_t n = nbus_subject_for("p:", s, "ch.", name, sizeof(name));
    assert_int_equal(n, 2 + 3 + 3 * sizeof(name));
    assert_true(n < NBUS_SUBJECT_MAX);
}

static void test_urls(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(nbus_parse_url("nats://127.0.0.1:4222", err, sizeof(err)), 0);
    assert_int_equal(nbus_parse_url("nats://a:1,b:2,nats://c:3", err, sizeof(err)), 0);
    assert_int_equal(nbus_parse_url("nats://u:p:w@a:1,b:2", err, sizeof(err)), 0);
    assert_int_equal(nbus_parse_url("nats://tok@[::1]:4222", err, sizeof(err)), 0);
    const char *bad[] = {"redis://a:1",    "nats://",     "nats://a",        "nats://a:0",
                         "nats://a:65536", "nats://a:1,", "nats://a:1,,b:2", "nats://@a:1",
                         "nats://a:1/x",   "nats://:1",   "nats://a:1x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        err[0] = '\0';
        assert_int_equal(nbus_parse_url(bad[i], err, sizeof(err)), -1);
        assert_true(err[0] != '\0');
    }
    char many[512] = "nats://";
    for (int i = 0; i < NBUS_SERVERS_MAX + 1; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "%sh:%d", i ? "," : "", i + 1);
    assert_int_equal(nbus_parse_url(many, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "at most"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_answer_s),
        cmocka_unit_test(test_counts_and_online),
        cmocka_unit_test(test_first_found),
        cmocka_unit_test(test_joined_and_max),
        cmocka_unit_test(test_channels_added_by_name),
        cmocka_unit_test(test_info),
        cmocka_unit_test(test_subject_escaping),
        cmocka_unit_test(test_urls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
