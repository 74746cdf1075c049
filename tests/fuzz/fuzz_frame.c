/* fuzz_frame.c - the length-prefixed client framing: walks a byte stream as
 * frames the way client.c does, and checks that every accepted frame lies
 * within the input and under the limit, and that encoding round-trips. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const size_t max = 1024;
    size_t off = 0;
    while (off < size) {
        uint32_t n;
        int rc = frame_decode(data + off, size - off, max, &n);
        if (rc == FRAME_AGAIN || rc == FRAME_TOO_BIG)
            break;
        if (n > max)
            abort();
        if (size - off - FRAME_HEADER_LEN < n)
            break; /* incomplete: a reader waits for more */
        uint8_t hdr[FRAME_HEADER_LEN];
        uint32_t back;
        frame_encode(hdr, n);
        if (frame_decode(hdr, sizeof(hdr), max, &back) != FRAME_OK || back != n)
            abort();
        off += FRAME_HEADER_LEN + n;
    }
    return 0;
}
