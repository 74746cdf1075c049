/* fuzz_natsq.c - libFuzzer target for the NATS bus's query sum (natsq.c): a
 * query type, a maximum and any number of workers' parts, as hostile as the
 * bus may carry. Checks that a part is either taken or refused whole, and that
 * an answer given (0) never passes the maximum.
 * Input: u8 type | u16 max | u8 nsids | repeated (u8 status | u16 len | part). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "natsq.h"
#include "rmsg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int types[] = {RMSG_IS_ONLINE,   RMSG_UID_COUNT, RMSG_UID_SIDS,   RMSG_SID_UID,
                                RMSG_SESSION_GET, RMSG_CH_COUNT,  RMSG_CH_MEMBERS, RMSG_CH_SESSIONS,
                                RMSG_CHANNELS,    RMSG_INFO};
    if (size < 4)
        return 0;
    int type = types[data[0] % (sizeof(types) / sizeof(*types))];
    size_t max = (size_t)data[1] << 8 | data[2], nsids = data[3];
    struct natsq_merge *m = natsq_merge_new(type, max, nsids);
    if (m == NULL)
        return 0;
    size_t off = 4;
    unsigned w = 0;
    while (off + 3 <= size) {
        int status = data[off] & 1;
        size_t len = (size_t)data[off + 1] << 8 | data[off + 2];
        off += 3;
        if (len > size - off)
            len = size - off;
        natsq_merge_add(m, 1, w++ & 31, status, data + off, len);
        off += len;
    }
    struct evbuffer *out = evbuffer_new();
    int rc = natsq_merge_result(m, out);
    if (rc == 0 && evbuffer_get_length(out) > max)
        abort();
    evbuffer_free(out);
    natsq_merge_free(m);
    return 0;
}
