/* test_sid.c - session ids: format, decoding, uniqueness. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sid.h"

static int cmp16(const void *a, const void *b)
{
    return memcmp(a, b, SID_LEN);
}

static void test_format_and_decode(void **state)
{
    (void)state;
    struct sid_gen g;
    char s[SID_LEN];
    sid_gen_init(&g, 8191, 31);
    uint64_t now = SID_EPOCH_MS + 123456789;
    sid_next(&g, now, s);
    for (int i = 0; i < SID_LEN; i++)
        assert_true((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'));
    uint64_t ms;
    unsigned srv, wrk, seq;
    assert_int_equal(sid_decode(s, &ms, &srv, &wrk, &seq), 0);
    assert_int_equal(ms, now);
    assert_int_equal(srv, 8191);
    assert_int_equal(wrk, 31);
    assert_int_equal(seq, 0);
    /* known value: ms offset 1, server 1, worker 1, seq 0 */
    sid_gen_init(&g, 1, 1);
    sid_next(&g, SID_EPOCH_MS + 1, s);
    assert_memory_equal(s, "0000000001000840", SID_LEN);
}

static void test_decode_rejects(void **state)
{
    (void)state;
    assert_int_equal(sid_decode("0000000001000840", NULL, NULL, NULL, NULL), 0);
    assert_int_equal(sid_decode("000000000100084G", NULL, NULL, NULL, NULL), -1);
    assert_int_equal(sid_decode("000000000100084A", NULL, NULL, NULL, NULL), -1);
    assert_int_equal(sid_decode("00000000010008 0", NULL, NULL, NULL, NULL), -1);
}

/* 1M ids from one worker in the same millisecond, and a clock going
 * backwards: all distinct, and the logical clock never decreases. */
static void test_one_worker_million(void **state)
{
    (void)state;
    enum { N = 1000000 };
    char *ids = malloc((size_t)N * SID_LEN);
    assert_non_null(ids);
    struct sid_gen g;
    sid_gen_init(&g, 7, 3);
    uint64_t now = SID_EPOCH_MS + 1000000;
    uint64_t last = 0;
    for (int i = 0; i < N; i++) {
        uint64_t t = now + (uint64_t)(i / 1000) - (i % 5000 == 4999 ? 50 : 0);
        sid_next(&g, t, ids + (size_t)i * SID_LEN);
        uint64_t ms;
        unsigned srv, wrk;
        assert_int_equal(sid_decode(ids + (size_t)i * SID_LEN, &ms, &srv, &wrk, NULL), 0);
        assert_true(ms >= last);
        last = ms;
        assert_int_equal(srv, 7);
        assert_int_equal(wrk, 3);
    }
    qsort(ids, N, SID_LEN, cmp16);
    for (int i = 1; i < N; i++)
        assert_true(memcmp(ids + (size_t)(i - 1) * SID_LEN, ids + (size_t)i * SID_LEN, SID_LEN)
                    != 0);
    free(ids);
}

/* Many servers x all workers, same clock: ids never collide. */
static void test_many_servers_workers(void **state)
{
    (void)state;
    enum { SERVERS = 64, WORKERS = 32, PER = 200 };
    size_t n = (size_t)SERVERS * WORKERS * PER;
    char *ids = malloc(n * SID_LEN);
    assert_non_null(ids);
    size_t k = 0;
    uint64_t now = SID_EPOCH_MS + 5;
    for (unsigned s = 0; s < SERVERS; s++) {
        for (unsigned w = 0; w < WORKERS; w++) {
            struct sid_gen g;
            sid_gen_init(&g, s * 127 % 8192, w);
            for (int i = 0; i < PER; i++)
                sid_next(&g, now, ids + (k++) * SID_LEN);
        }
    }
    qsort(ids, n, SID_LEN, cmp16);
    for (size_t i = 1; i < n; i++)
        assert_true(memcmp(ids + (i - 1) * SID_LEN, ids + i * SID_LEN, SID_LEN) != 0);
    free(ids);
}

/* A successor worker that starts from its predecessor's clock never repeats. */
static void test_successor_continues(void **state)
{
    (void)state;
    struct sid_gen a, b;
    char x[SID_LEN], y[SID_LEN];
    sid_gen_init(&a, 1, 2);
    for (int i = 0; i < 1000; i++)
        sid_next(&a, SID_EPOCH_MS + 10, x); /* runs the clock ahead */
    sid_gen_init(&b, 1, 2);
    b.last_ms = a.last_ms;
    b.seq = 63;
    sid_next(&b, SID_EPOCH_MS + 10, y);
    assert_true(memcmp(x, y, SID_LEN) < 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_and_decode),   cmocka_unit_test(test_decode_rejects),
        cmocka_unit_test(test_one_worker_million),  cmocka_unit_test(test_many_servers_workers),
        cmocka_unit_test(test_successor_continues),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
