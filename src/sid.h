/* sid.h - session ids: 16 lowercase hex characters encoding a 64-bit value
 *   40 bits  milliseconds since 2024-01-01 00:00:00 UTC
 *   13 bits  server id (SERVER_ID)
 *    5 bits  worker id
 *    6 bits  sequence within the millisecond
 * Unique across workers and gateways without coordination, and routable: the
 * server and worker ids read straight back out of an id. */
#ifndef FOOKING_SID_H
#define FOOKING_SID_H

#include <stdint.h>

#define SID_LEN      16
#define SID_EPOCH_MS 1704067200000ULL /* 2024-01-01T00:00:00Z */

struct sid_gen {
    uint64_t last_ms; /* logical clock: never goes backwards */
    unsigned seq;
    unsigned server_id, worker_id;
};

void sid_gen_init(struct sid_gen *g, unsigned server_id, unsigned worker_id);
/* Writes SID_LEN characters (no NUL) for the current time. When more than 64 ids
 * are asked for in one millisecond, the logical clock borrows the next one. */
void sid_next(struct sid_gen *g, uint64_t now_ms, char out[SID_LEN]);
/* Parses an id; returns 0, or -1 if it is not 16 lowercase hex characters. */
int sid_decode(const char *sid, uint64_t *ms, unsigned *server_id, unsigned *worker_id,
               unsigned *seq);
uint64_t sid_now_ms(void);

#endif
