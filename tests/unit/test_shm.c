/* test_shm.c - the shared block: per-worker session tables, and the
 * MAX_CONN_PER_IP table (open addressing, deletion by backward shift) under
 * many addresses, collisions, wrap-around at the table's end, and deletion
 * in random order checked against a model. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "shm.h"

/* The table's hash (FNV-1a over the 16 bytes), to build addresses whose
 * home slots collide or sit at the end of the table. */
static uint32_t home_of(const uint8_t a[16])
{
    uint32_t h = 2166136261u;
    for (int i = 0; i < 16; i++)
        h = (h ^ a[i]) * 16777619u;
    return h & (SHM_IP_SLOTS - 1);
}

static void addr_v4(uint8_t a[16], uint32_t ip)
{
    memset(a, 0, 16);
    a[10] = a[11] = 0xff;
    a[12] = (uint8_t)(ip >> 24);
    a[13] = (uint8_t)(ip >> 16);
    a[14] = (uint8_t)(ip >> 8);
    a[15] = (uint8_t)ip;
}

static void test_create_layout(void **state)
{
    (void)state;
    struct shm_block *b = shm_create(3);
    assert_non_null(b);
    assert_int_equal(b->nworkers, 3);
    assert_int_equal(atomic_load(&b->clients), 0);
    for (int w = 0; w < 3; w++) {
        struct shm_sessions *s = shm_sessions(b, w);
        assert_ptr_equal(s, &b->sessions[w]);
        assert_int_equal(s->used, 0);
        assert_int_equal(atomic_load(&b->workers[w].ips_used), 0);
    }
    /* the tables of two workers do not overlap */
    memcpy(shm_sessions(b, 0)->sid[SHM_SESSIONS_PER_WORKER - 1], "aaaaaaaaaaaaaaaa", 16);
    shm_sessions(b, 1)->used = 7;
    memcpy(shm_sessions(b, 1)->sid[0], "bbbbbbbbbbbbbbbb", 16);
    assert_memory_equal(shm_sessions(b, 0)->sid[SHM_SESSIONS_PER_WORKER - 1], "aaaaaaaaaaaaaaaa",
                        16);
    assert_int_equal(shm_sessions(b, 0)->used, 0);
    assert_int_equal(shm_sessions(b, 2)->sid[0][0], 0);
    shm_destroy(b);
    shm_destroy(NULL);
}

static void test_ip_counts_per_worker_and_total(void **state)
{
    (void)state;
    struct shm_block *b = shm_create(2);
    assert_non_null(b);
    uint8_t x[16], y[16];
    addr_v4(x, 0x7f000001);
    addr_v4(y, 0x0a000001);
    assert_int_equal(shm_ip_total(b, x), 0);
    assert_int_equal(shm_ip_add(b, 0, x, -1), 0); /* an unknown address: no effect */
    assert_int_equal(shm_ip_total(b, x), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(shm_ip_add(b, 0, x, +1), 0);
    assert_int_equal(shm_ip_add(b, 1, x, +1), 0);
    assert_int_equal(shm_ip_add(b, 1, y, +1), 0);
    assert_int_equal(shm_ip_total(b, x), 4);
    assert_int_equal(shm_ip_total(b, y), 1);
    assert_int_equal(atomic_load(&b->workers[0].ips_used), 1);
    assert_int_equal(shm_ip_add(b, 0, x, -1), 0);
    assert_int_equal(shm_ip_total(b, x), 3);
    /* clearing worker 1 (it died) leaves worker 0's counts */
    shm_ip_clear(b, 1);
    assert_int_equal(shm_ip_total(b, x), 2);
    assert_int_equal(shm_ip_total(b, y), 0);
    assert_int_equal(atomic_load(&b->workers[1].ips_used), 0);
    /* and the cleared table works again */
    assert_int_equal(shm_ip_add(b, 1, y, +1), 0);
    assert_int_equal(shm_ip_total(b, y), 1);
    shm_destroy(b);
}

/* n distinct addresses whose home slot is `home` (found by search). */
static int find_homed(uint8_t (*out)[16], int n, uint32_t home, uint32_t start)
{
    int got = 0;
    for (uint32_t ip = start; got < n && ip < start + 0x4000000u; ip++) {
        uint8_t a[16];
        addr_v4(a, ip);
        if (home_of(a) == home)
            memcpy(out[got++], a, 16);
    }
    return got;
}

static void test_ip_collisions_and_wrap(void **state)
{
    (void)state;
    struct shm_block *b = shm_create(1);
    assert_non_null(b);
    /* 5 addresses homed at the last slot (their run wraps to slots 0..3),
     * then 3 homed at slot 1 (pushed behind the wrapped run). */
    uint8_t end[5][16], one[3][16];
    assert_int_equal(find_homed(end, 5, SHM_IP_SLOTS - 1, 1), 5);
    assert_int_equal(find_homed(one, 3, 1, 1), 3);
    for (int i = 0; i < 5; i++)
        for (int k = 0; k <= i; k++)
            assert_int_equal(shm_ip_add(b, 0, end[i], +1), 0); /* end[i] counts i + 1 */
    for (int i = 0; i < 3; i++)
        assert_int_equal(shm_ip_add(b, 0, one[i], +1), 0);
    /* delete in an order that makes the backward shift move entries across
     * the wrap: the first of the end run, then one in the middle */
    assert_int_equal(shm_ip_add(b, 0, end[0], -1), 0);
    for (int k = 0; k < 3; k++)
        assert_int_equal(shm_ip_add(b, 0, end[2], -1), 0);
    assert_int_equal(shm_ip_total(b, end[0]), 0);
    assert_int_equal(shm_ip_total(b, end[2]), 0);
    assert_int_equal(shm_ip_total(b, end[1]), 2);
    assert_int_equal(shm_ip_total(b, end[3]), 4);
    assert_int_equal(shm_ip_total(b, end[4]), 5);
    for (int i = 0; i < 3; i++)
        assert_int_equal(shm_ip_total(b, one[i]), 1);
    /* every entry still sits in its probe run: each can be taken to zero */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(shm_ip_add(b, 0, one[i], -1), 0);
        assert_int_equal(shm_ip_total(b, one[i]), 0);
    }
    for (int k = 0; k < 2; k++)
        shm_ip_add(b, 0, end[1], -1);
    for (int k = 0; k < 4; k++)
        shm_ip_add(b, 0, end[3], -1);
    for (int k = 0; k < 5; k++)
        shm_ip_add(b, 0, end[4], -1);
    for (uint32_t i = 0; i < SHM_IP_SLOTS; i++)
        assert_int_equal(atomic_load(&b->ips[0].slot[i].count), 0);
    shm_destroy(b);
}

/* A wrapped entry must not move back before its home: A homed at the
 * second-last slot, B and C at the last (C wraps to slot 0). Deleting A opens
 * a hole at the second-last slot; C (at 0, home last) must stay where it is,
 * or a lookup from its home would stop at the empty slot 0. */
static void test_ip_shift_never_moves_before_home(void **state)
{
    (void)state;
    struct shm_block *b = shm_create(1);
    assert_non_null(b);
    uint8_t a[1][16], bc[2][16];
    assert_int_equal(find_homed(a, 1, SHM_IP_SLOTS - 2, 1), 1);
    assert_int_equal(find_homed(bc, 2, SHM_IP_SLOTS - 1, 1), 2);
    assert_int_equal(shm_ip_add(b, 0, a[0], +1), 0);
    assert_int_equal(shm_ip_add(b, 0, bc[0], +1), 0);
    assert_int_equal(shm_ip_add(b, 0, bc[1], +1), 0);
    assert_int_equal(atomic_load(&b->ips[0].slot[0].count), 1); /* C wrapped to slot 0 */
    assert_int_equal(shm_ip_add(b, 0, a[0], -1), 0);
    assert_int_equal(shm_ip_total(b, a[0]), 0);
    assert_int_equal(shm_ip_total(b, bc[0]), 1);
    assert_int_equal(shm_ip_total(b, bc[1]), 1);
    /* and C can still be taken away and re-added (no duplicate entry) */
    assert_int_equal(shm_ip_add(b, 0, bc[1], -1), 0);
    assert_int_equal(shm_ip_total(b, bc[1]), 0);
    assert_int_equal(shm_ip_add(b, 0, bc[1], +1), 0);
    assert_int_equal(shm_ip_total(b, bc[1]), 1);
    shm_destroy(b);
}

/* Deterministic xorshift, so a failure repeats. */
static uint32_t rnd_state = 2463534242u;
static uint32_t rnd(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 17;
    rnd_state ^= rnd_state << 5;
    return rnd_state;
}

/* Many addresses, crowded into few home slots so runs are long and merge,
 * counts added and removed in random order, every total checked against a
 * model after every deletion of an entry (when backward shift runs). */
static void test_ip_random_against_model(void **state)
{
    (void)state;
    enum { N = 3000, HOMES = 64 };
    struct shm_block *b = shm_create(2);
    assert_non_null(b);
    static uint8_t addr[N][16];
    static int want[N];
    /* N addresses homed in HOMES slots spread over the table, some at its end */
    int n = 0;
    for (uint32_t ip = 1; n < N; ip++) {
        uint8_t a[16];
        addr_v4(a, ip * 2654435761u);
        uint32_t h = home_of(a);
        if (h % (SHM_IP_SLOTS / HOMES) < 2 || h > SHM_IP_SLOTS - 3) {
            int dup = 0;
            for (int k = 0; k < n && !dup; k++)
                dup = memcmp(addr[k], a, 16) == 0;
            if (!dup)
                memcpy(addr[n++], a, 16);
        }
    }
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < N; i++) {
            int c = 1 + (int)(rnd() % 3);
            for (int k = 0; k < c; k++)
                assert_int_equal(shm_ip_add(b, 0, addr[i], +1), 0);
            want[i] += c;
        }
        /* worker 1 counts a few of them too: totals sum both tables */
        for (int i = 0; i < N; i += 97)
            shm_ip_add(b, 1, addr[i], +1);
        /* random deletion order: a permutation */
        static int order[N];
        for (int i = 0; i < N; i++)
            order[i] = i;
        for (int i = N - 1; i > 0; i--) {
            int j = (int)(rnd() % (uint32_t)(i + 1)), t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        int checks = 0;
        for (int oi = 0; oi < N; oi++) {
            int i = order[oi];
            int drop = round < 3 ? want[i] : want[i] - 1; /* the last round keeps one each */
            for (int k = 0; k < drop; k++)
                assert_int_equal(shm_ip_add(b, 0, addr[i], -1), 0);
            want[i] -= drop;
            /* after each entry deletion, a sample of the others (all every 100) */
            int all = oi % 100 == 0;
            for (int j = 0; j < N; j += all ? 1 : 53) {
                unsigned w0 = (unsigned)want[j];
                unsigned total = shm_ip_total(b, addr[j]);
                unsigned w1 = j % 97 == 0 ? 1 : 0;
                if (total != w0 + w1)
                    fail_msg("round %d after %d deletions: address %d counts %u, want %u", round,
                             oi + 1, j, total, w0 + w1);
                checks++;
            }
        }
        assert_true(checks > N);
        for (int i = 0; i < N; i += 97)
            shm_ip_add(b, 1, addr[i], -1);
    }
    /* what is left: one each in worker 0 */
    unsigned used = 0;
    for (uint32_t i = 0; i < SHM_IP_SLOTS; i++)
        used += atomic_load(&b->ips[0].slot[i].count) ? 1 : 0;
    assert_int_equal(used, N);
    shm_ip_clear(b, 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(shm_ip_total(b, addr[i]), 0);
    shm_destroy(b);
}

static void test_ip_table_full(void **state)
{
    (void)state;
    struct shm_block *b = shm_create(1);
    assert_non_null(b);
    uint8_t a[16];
    for (uint32_t i = 0; i < SHM_IP_SLOTS; i++) {
        addr_v4(a, 0x01000000u + i);
        assert_int_equal(shm_ip_add(b, 0, a, +1), 0);
    }
    addr_v4(a, 0x7f000001);
    assert_int_equal(shm_ip_add(b, 0, a, +1), -1); /* full: refused, not counted */
    assert_int_equal(shm_ip_total(b, a), 0);
    addr_v4(a, 0x01000000u + 5);
    assert_int_equal(shm_ip_total(b, a), 1); /* lookups on a full table still end */
    assert_int_equal(shm_ip_add(b, 0, a, -1), 0);
    assert_int_equal(shm_ip_total(b, a), 0);
    uint8_t c[16];
    addr_v4(c, 0x7f000001);
    assert_int_equal(shm_ip_add(b, 0, c, +1), 0); /* the freed slot is usable */
    assert_int_equal(shm_ip_total(b, c), 1);
    shm_destroy(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_layout),
        cmocka_unit_test(test_ip_counts_per_worker_and_total),
        cmocka_unit_test(test_ip_collisions_and_wrap),
        cmocka_unit_test(test_ip_shift_never_moves_before_home),
        cmocka_unit_test(test_ip_random_against_model),
        cmocka_unit_test(test_ip_table_full),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
