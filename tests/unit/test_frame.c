/* test_frame.c - the length-prefixed framing codec: header encoding, and
 * decoding with its limit at the boundary values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "frame.h"

static void test_encode_big_endian(void **state)
{
    (void)state;
    uint8_t h[FRAME_HEADER_LEN];
    frame_encode(h, 0x01020304u);
    assert_memory_equal(h, "\x01\x02\x03\x04", 4);
    frame_encode(h, 0);
    assert_memory_equal(h, "\0\0\0\0", 4);
    frame_encode(h, 0xFFFFFFFFu);
    assert_memory_equal(h, "\xff\xff\xff\xff", 4);
    frame_encode(h, 0x80u); /* no sign extension of a byte with the top bit */
    assert_memory_equal(h, "\0\0\0\x80", 4);
}

static void test_roundtrip(void **state)
{
    (void)state;
    static const uint32_t values[] = {0, 1, 255, 256, 65535, 65536, 0x7FFFFFFFu, 0x80000000u,
                                      0xFFFFFFFEu, 0xFFFFFFFFu};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        uint8_t h[FRAME_HEADER_LEN];
        uint32_t n = 12345;
        frame_encode(h, values[i]);
        assert_int_equal(frame_decode(h, sizeof(h), SIZE_MAX, &n), FRAME_OK);
        assert_int_equal(n, values[i]);
    }
}

static void test_short_header_needs_more(void **state)
{
    (void)state;
    const uint8_t h[4] = {0, 0, 0, 5};
    for (size_t len = 0; len < FRAME_HEADER_LEN; len++) {
        uint32_t n = 777;
        assert_int_equal(frame_decode(h, len, 100, &n), FRAME_AGAIN);
        assert_int_equal(n, 777); /* untouched */
    }
    uint32_t n = 0;
    assert_int_equal(frame_decode(h, 4, 100, &n), FRAME_OK);
    assert_int_equal(n, 5);
}

static void test_limit_boundaries(void **state)
{
    (void)state;
    uint8_t h[FRAME_HEADER_LEN];
    uint32_t n;
    frame_encode(h, 65536);
    assert_int_equal(frame_decode(h, 4, 65536, &n), FRAME_OK); /* == max is allowed */
    assert_int_equal(n, 65536);
    assert_int_equal(frame_decode(h, 4, 65535, &n), FRAME_TOO_BIG); /* max + 1 */
    assert_int_equal(n, 65536); /* the length is reported, for the log line */
    frame_encode(h, 0);
    assert_int_equal(frame_decode(h, 4, 0, &n), FRAME_OK); /* an empty message, max 0 */
    frame_encode(h, 1);
    assert_int_equal(frame_decode(h, 4, 0, &n), FRAME_TOO_BIG);
    frame_encode(h, 0xFFFFFFFFu);
    assert_int_equal(frame_decode(h, 4, 0xFFFFFFFEu, &n), FRAME_TOO_BIG);
    assert_int_equal(frame_decode(h, 4, 0xFFFFFFFFu, &n), FRAME_OK);
}

static void test_only_header_is_read(void **state)
{
    (void)state;
    /* Bytes past the header (the payload) do not change the decoded length. */
    const uint8_t buf[8] = {0, 0, 1, 0, 0xff, 0xff, 0xff, 0xff};
    uint32_t n;
    assert_int_equal(frame_decode(buf, sizeof(buf), 1 << 20, &n), FRAME_OK);
    assert_int_equal(n, 256);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_big_endian),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_short_header_needs_more),
        cmocka_unit_test(test_limit_boundaries),
        cmocka_unit_test(test_only_header_is_read),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
