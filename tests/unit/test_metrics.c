/* test_metrics.c - the Prometheus text format: headers, samples with escaped
 * label values, histograms (cumulative buckets, +Inf, sum and count), and the
 * bucket an observation falls in. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <event2/buffer.h>

#include "metrics.h"

/* The buffer's text, NUL-terminated, in a block the caller frees. */
static char *text_of(struct evbuffer *b)
{
    size_t n = evbuffer_get_length(b);
    char *s = malloc(n + 1);
    assert_non_null(s);
    evbuffer_remove(b, s, n);
    s[n] = '\0';
    return s;
}

static void expect_text(struct evbuffer *b, const char *want)
{
    char *got = text_of(b);
    assert_string_equal(got, want);
    free(got);
}

static void test_header(void **state)
{
    (void)state;
    struct evbuffer *b = evbuffer_new();
    metrics_header(b, "fooking_clients", "gauge", "Clients connected.");
    expect_text(b, "# HELP fooking_clients Clients connected.\n"
                   "# TYPE fooking_clients gauge\n");
    metrics_header(b, "x_total", "counter", "a \\ and a\nline");
    expect_text(b, "# HELP x_total a \\\\ and a\\nline\n"
                   "# TYPE x_total counter\n");
    evbuffer_free(b);
}

static void test_samples(void **state)
{
    (void)state;
    struct evbuffer *b = evbuffer_new();
    metrics_u64(b, "a_total", NULL, NULL, 18446744073709551615ULL);
    metrics_i64(b, "g", "protocol", "websocket", -3);
    metrics_double(b, "d", NULL, NULL, 0.25);
    metrics_double(b, "inf", NULL, NULL, 1.0 / 0.0);
    expect_text(b, "a_total 18446744073709551615\n"
                   "g{protocol=\"websocket\"} -3\n"
                   "d 0.25\n"
                   "inf +Inf\n");
    evbuffer_free(b);
}

static void test_label_escaping(void **state)
{
    (void)state;
    struct evbuffer *b = evbuffer_new();
    metrics_u64(b, "m", "l", "say \"hi\"\\\nbye", 1);
    expect_text(b, "m{l=\"say \\\"hi\\\"\\\\\\nbye\"} 1\n");
    metrics_u64(b, "m", "l", "", 0);
    expect_text(b, "m{l=\"\"} 0\n");
    evbuffer_free(b);
}

static void test_histogram(void **state)
{
    (void)state;
    static const double bounds[] = {0.001, 0.25, 10};
    const uint64_t counts[] = {2, 0, 3, 1};
    struct evbuffer *b = evbuffer_new();
    metrics_histogram(b, "h_seconds", bounds, 3, counts, 12.5);
    expect_text(b, "h_seconds_bucket{le=\"0.001\"} 2\n"
                   "h_seconds_bucket{le=\"0.25\"} 2\n"
                   "h_seconds_bucket{le=\"10\"} 5\n"
                   "h_seconds_bucket{le=\"+Inf\"} 6\n"
                   "h_seconds_sum 12.5\n"
                   "h_seconds_count 6\n");
    const uint64_t none[] = {0, 0, 0, 0};
    metrics_histogram(b, "h_seconds", bounds, 3, none, 0);
    char *t = text_of(b);
    assert_non_null(strstr(t, "h_seconds_bucket{le=\"+Inf\"} 0\n"));
    assert_non_null(strstr(t, "h_seconds_sum 0\nh_seconds_count 0\n"));
    free(t);
    evbuffer_free(b);
}

static void test_bucket(void **state)
{
    (void)state;
    static const double bounds[] = {0.001, 0.25, 10};
    assert_int_equal(metrics_bucket(bounds, 3, 0), 0);
    assert_int_equal(metrics_bucket(bounds, 3, 0.001), 0); /* le: inclusive */
    assert_int_equal(metrics_bucket(bounds, 3, 0.0011), 1);
    assert_int_equal(metrics_bucket(bounds, 3, 0.25), 1);
    assert_int_equal(metrics_bucket(bounds, 3, 9.99), 2);
    assert_int_equal(metrics_bucket(bounds, 3, 10.01), 3);
    assert_int_equal(metrics_bucket(bounds, 3, 1e9), 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header),         cmocka_unit_test(test_samples),
        cmocka_unit_test(test_label_escaping), cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_bucket),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
