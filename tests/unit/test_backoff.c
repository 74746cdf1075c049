/* test_backoff.c - the retry delay: min, doubling to max, back to min on reset;
 * the master's respawn sequence (0.1 s doubling to 10 s) exactly as before. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "backoff.h"

static void test_doubling(void **state)
{
    struct backoff b;
    const double want[] = {0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10, 10};

    backoff_init(&b, 0.1, 10);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        assert_true(backoff_next(&b) == want[i]);
    backoff_reset(&b);
    assert_true(backoff_next(&b) == 0.1);
    backoff_init(&b, 0.1, 5);
    for (int i = 0; i < 6; i++)
        backoff_next(&b);
    assert_true(backoff_next(&b) == 5);
}

static void test_timeval(void **state)
{
    struct timeval tv = backoff_timeval(0.1);

    assert_int_equal(tv.tv_sec, 0);
    assert_int_equal(tv.tv_usec, 100000);
    tv = backoff_timeval(3.2);
    assert_int_equal(tv.tv_sec, 3);
    assert_true(tv.tv_usec >= 199999 && tv.tv_usec <= 200000);
    tv = backoff_timeval(5);
    assert_int_equal(tv.tv_sec, 5);
    assert_int_equal(tv.tv_usec, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_doubling),
        cmocka_unit_test(test_timeval),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
