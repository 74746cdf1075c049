/* test_loop.c - the block cache under libevent's buffers: a drained buffer's
 * block is taken again by the next one, sizes round up to a power of two so
 * a cached block serves any request of its size, the cache is bounded, and
 * loop_mem_trim gives back what was not needed since the last call. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <malloc.h>
#include <string.h>

#include <event2/buffer.h>

#include "loop.h"

static void test_reuse_and_trim(void **state)
{
    char data[3000];
    memset(data, 'x', sizeof(data));
    struct evbuffer *b = evbuffer_new();
    assert_non_null(b);
    size_t before = loop_mem_cached();
    evbuffer_add(b, data, sizeof(data)); /* a block of 4 KiB */
    unsigned char *first = evbuffer_pullup(b, 1);
    evbuffer_drain(b, sizeof(data)); /* back to the cache */
    assert_int_equal(loop_mem_cached(), before + 1);
    evbuffer_add(b, data, 100); /* a 1 KiB block: not that one */
    evbuffer_drain(b, 100);
    assert_int_equal(loop_mem_cached(), before + 2);
    evbuffer_add(b, data, sizeof(data)); /* the 4 KiB block again */
    assert_ptr_equal(evbuffer_pullup(b, 1), first);
    assert_int_equal(loop_mem_cached(), before + 1);
    evbuffer_drain(b, sizeof(data));
    evbuffer_free(b);
    /* Twice: the first call marks, the second frees what nobody took. */
    loop_mem_trim();
    loop_mem_trim();
    assert_int_equal(loop_mem_cached(), 0);
}

static void test_bounded(void **state)
{
    enum { N = 1000 };
    static struct evbuffer *bufs[N];
    char data[100] = {0};
    for (int i = 0; i < N; i++) {
        bufs[i] = evbuffer_new();
        evbuffer_add(bufs[i], data, sizeof(data));
    }
    for (int i = 0; i < N; i++)
        evbuffer_free(bufs[i]);
    /* 1,000 blocks of 1 KiB freed: only a bounded number is kept. */
    assert_true(loop_mem_cached() <= 128);
    assert_true(loop_mem_cached() > 0);
    loop_mem_trim();
    loop_mem_trim();
    assert_int_equal(loop_mem_cached(), 0);
}

int main(void)
{
    loop_mem_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reuse_and_trim),
        cmocka_unit_test(test_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
