/* fuzz_static_path.c - libFuzzer target for static_resolve() (static.c).
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc \
 *       tests/fuzz/fuzz_static_path.c src/static.c -o /tmp/fuzz_static_path
 *
 * Besides memory errors it checks what static.h promises of a resolved path: no
 * leading '/', no empty, ".", ".." or hidden segment, no NUL inside, and the same
 * answer from a small buffer (when it fits) as from a large one. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "static.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char big[STATIC_PATH_MAX * 2];
    char small[64];
    const char *target = (const char *)data;

    int st = static_resolve(target, size, big, sizeof(big));
    CHECK(st == STATIC_OK || st == STATIC_BAD_REQUEST || st == STATIC_FORBIDDEN
          || st == STATIC_NOT_FOUND || st == STATIC_URI_TOO_LONG);
    int st2 = static_resolve(target, size, small, sizeof(small));
    if (st != STATIC_OK) {
        CHECK(st2 == st || st2 == STATIC_URI_TOO_LONG);
        return 0;
    }
    CHECK(st2 == STATIC_OK || st2 == STATIC_URI_TOO_LONG);
    if (st2 == STATIC_OK)
        CHECK(strcmp(small, big) == 0);

    size_t len = strlen(big);
    CHECK(len > 0 && len < sizeof(big) && big[0] != '/' && big[len - 1] != '/');
    for (const char *seg = big;;) {
        const char *slash = strchr(seg, '/');
        size_t n = slash ? (size_t)(slash - seg) : strlen(seg);
        CHECK(n > 0 && seg[0] != '.');
        if (!slash)
            break;
        seg = slash + 1;
    }
    CHECK(static_content_type(big, len) != NULL);
    return 0;
}
