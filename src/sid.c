/* sid.c - session id generation and decoding (layout in sid.h). */
#include "sid.h"

#include <time.h>

void sid_gen_init(struct sid_gen *g, unsigned server_id, unsigned worker_id)
{
    g->last_ms = 0;
    g->seq = 0;
    g->server_id = server_id & 0x1fff;
    g->worker_id = worker_id & 0x1f;
}

uint64_t sid_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void sid_next(struct sid_gen *g, uint64_t now_ms, char out[SID_LEN])
{
    static const char hex[] = "0123456789abcdef";
    uint64_t ms = now_ms > SID_EPOCH_MS ? now_ms - SID_EPOCH_MS : 0;
    if (ms > g->last_ms) {
        g->last_ms = ms;
        g->seq = 0;
    } else if (++g->seq > 63) {
        /* 64 ids used in this millisecond (or the wall clock stepped back):
         * move the logical clock on rather than ever repeat an id. */
        g->last_ms++;
        g->seq = 0;
    }
    uint64_t v = ((g->last_ms & 0xffffffffffULL) << 24) | ((uint64_t)g->server_id << 11)
                 | ((uint64_t)g->worker_id << 6) | g->seq;
    for (int i = SID_LEN - 1; i >= 0; i--, v >>= 4)
        out[i] = hex[v & 15];
}

int sid_decode(const char *sid, uint64_t *ms, unsigned *server_id, unsigned *worker_id,
               unsigned *seq)
{
    uint64_t v = 0;
    for (int i = 0; i < SID_LEN; i++) {
        char c = sid[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else
            return -1;
        v = (v << 4) | d;
    }
    if (ms)
        *ms = (v >> 24) + SID_EPOCH_MS;
    if (server_id)
        *server_id = (unsigned)(v >> 11) & 0x1fff;
    if (worker_id)
        *worker_id = (unsigned)(v >> 6) & 0x1f;
    if (seq)
        *seq = (unsigned)v & 63;
    return 0;
}
