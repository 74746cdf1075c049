/* test_hmap.c - hash map: put/get/replace/del, growth across many keys, binary
 * keys, and deleting the current entry while iterating. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmap.h"

static void test_basic(void **state)
{
    struct hmap *m = hmap_new(0);
    void *old = (void *)1;
    int a, b;

    assert_non_null(m);
    assert_int_equal(hmap_count(m), 0);
    assert_null(hmap_get(m, "x", 1));
    assert_false(hmap_has(m, "x", 1));
    assert_int_equal(hmap_put(m, "x", 1, &a, &old), 1);
    assert_null(old);
    assert_ptr_equal(hmap_get(m, "x", 1), &a);
    assert_null(hmap_get(m, "xx", 2));
    assert_null(hmap_get(m, "", 0));
    assert_int_equal(hmap_put(m, "x", 1, &b, &old), 0);
    assert_ptr_equal(old, &a);
    assert_ptr_equal(hmap_get(m, "x", 1), &b);
    assert_int_equal(hmap_count(m), 1);
    /* NULL values are stored, and hmap_has tells them from absent keys */
    assert_int_equal(hmap_put(m, "", 0, NULL, NULL), 1);
    assert_true(hmap_has(m, "", 0));
    assert_int_equal(hmap_count(m), 2);
    assert_int_equal(hmap_del(m, "x", 1, &old), 1);
    assert_ptr_equal(old, &b);
    assert_int_equal(hmap_del(m, "x", 1, &old), 0);
    assert_int_equal(hmap_del(m, "", 0, NULL), 1);
    assert_int_equal(hmap_count(m), 0);
    hmap_free(m, NULL);
}

static void test_key_is_copied(void **state)
{
    struct hmap *m = hmap_new(4);
    char key[8] = "chan";
    int v;

    hmap_put(m, key, 4, &v, NULL);
    memset(key, 0, sizeof(key));
    assert_ptr_equal(hmap_get(m, "chan", 4), &v);
    hmap_free(m, NULL);
}

static void test_binary_keys(void **state)
{
    struct hmap *m = hmap_new(0);
    int a, b;

    /* keys differing only after a NUL, and a pointer-sized key */
    assert_int_equal(hmap_put(m, "a\0b", 3, &a, NULL), 1);
    assert_int_equal(hmap_put(m, "a\0c", 3, &b, NULL), 1);
    assert_ptr_equal(hmap_get(m, "a\0b", 3), &a);
    assert_ptr_equal(hmap_get(m, "a\0c", 3), &b);
    void *p = &a;
    assert_int_equal(hmap_put(m, &p, sizeof(p), &b, NULL), 1);
    assert_ptr_equal(hmap_get(m, &p, sizeof(p)), &b);
    hmap_free(m, NULL);
}

#define MANY 100000

static void test_many_keys(void **state)
{
    struct hmap *m = hmap_new(0);
    char key[32];

    for (uintptr_t i = 0; i < MANY; i++) {
        int n = snprintf(key, sizeof(key), "%016lx", (unsigned long)i);
        assert_int_equal(hmap_put(m, key, (size_t)n, (void *)(i + 1), NULL), 1);
    }
    assert_int_equal(hmap_count(m), MANY);
    for (uintptr_t i = 0; i < MANY; i++) {
        int n = snprintf(key, sizeof(key), "%016lx", (unsigned long)i);
        assert_ptr_equal(hmap_get(m, key, (size_t)n), (void *)(i + 1));
    }
    /* delete the odd ones */
    for (uintptr_t i = 1; i < MANY; i += 2) {
        int n = snprintf(key, sizeof(key), "%016lx", (unsigned long)i);
        assert_int_equal(hmap_del(m, key, (size_t)n, NULL), 1);
    }
    assert_int_equal(hmap_count(m), MANY / 2);
    for (uintptr_t i = 0; i < MANY; i++) {
        int n = snprintf(key, sizeof(key), "%016lx", (unsigned long)i);
        assert_int_equal(hmap_has(m, key, (size_t)n), i % 2 == 0);
    }
    hmap_free(m, NULL);
}

static void test_iterate(void **state)
{
    struct hmap *m = hmap_new(0);
    struct hmap_iter it;
    const void *k;
    size_t klen, seen = 0;
    void *v;
    char key[16];
    unsigned char hit[1000] = {0};

    for (uintptr_t i = 0; i < 1000; i++) {
        int n = snprintf(key, sizeof(key), "k%lu", (unsigned long)i);
        hmap_put(m, key, (size_t)n, (void *)i, NULL);
    }
    hmap_iter_init(&it);
    while (hmap_next(m, &it, &k, &klen, &v)) {
        uintptr_t i = (uintptr_t)v;
        int n = snprintf(key, sizeof(key), "k%lu", (unsigned long)i);
        assert_int_equal(klen, (size_t)n);
        assert_memory_equal(k, key, klen);
        assert_int_equal(hit[i], 0);
        hit[i] = 1;
        seen++;
    }
    assert_int_equal(seen, 1000);

    /* delete every entry while iterating, each right after it is returned */
    seen = 0;
    hmap_iter_init(&it);
    while (hmap_next(m, &it, &k, &klen, NULL)) {
        char copy[16];
        memcpy(copy, k, klen);
        assert_int_equal(hmap_del(m, copy, klen, NULL), 1);
        seen++;
    }
    assert_int_equal(seen, 1000);
    assert_int_equal(hmap_count(m), 0);
    hmap_iter_init(&it);
    assert_int_equal(hmap_next(m, &it, NULL, NULL, NULL), 0);
    hmap_free(m, NULL);
}

static int freed;
static void count_free(void *p)
{
    free(p);
    freed++;
}

static void test_free_values(void **state)
{
    struct hmap *m = hmap_new(0);

    for (int i = 0; i < 50; i++)
        hmap_put(m, &i, sizeof(i), malloc(8), NULL);
    freed = 0;
    hmap_free(m, count_free);
    assert_int_equal(freed, 50);
    hmap_free(NULL, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),       cmocka_unit_test(test_key_is_copied),
        cmocka_unit_test(test_binary_keys), cmocka_unit_test(test_many_keys),
        cmocka_unit_test(test_iterate),     cmocka_unit_test(test_free_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
