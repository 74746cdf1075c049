/* shm.h - the small block of memory the master shares with its workers:
 * the gateway-wide client count (MAX_CLIENT_NUM) and, per worker slot, what a
 * replacement worker needs to carry on after its predecessor died, and what
 * the worker counts for the master's /metrics. */
#ifndef FOOKING_SHM_H
#define FOOKING_SHM_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include "stats.h"

#define SHM_MAX_WORKERS 32

struct shm_worker {
    atomic_int pid;
    atomic_int clients;          /* clients this worker holds now */
    atomic_uint_fast64_t sid_ms; /* last SID millisecond used, so a successor never repeats one */
    atomic_int ips_used;         /* its MAX_CONN_PER_IP table holds counts */
    atomic_int ready;            /* its worker accepts (a binary upgrade waits for all) */
    _Alignas(64) struct worker_stats stats; /* for /metrics (stats.h); a line of its own */
};

struct shm_block {
    atomic_int clients; /* all workers */
    int master_pid;     /* a worker whose parent is not this has lost its master */
    int nworkers;
    struct shm_sessions *sessions; /* nworkers tables, a separate mapping */
    struct shm_iptable *ips;       /* nworkers tables, a separate mapping */
    struct shm_worker workers[SHM_MAX_WORKERS];
};

/* Live session ids of one worker slot, so that when a worker dies its
 * replacement can post the close events the dead one owed the backend. Only
 * the slot's worker writes it; a successor reads it once the writer is dead.
 * The mapping is reserved, not committed: only pages in use cost memory. */
#define SHM_SESSIONS_PER_WORKER (256 * 1024)
struct shm_sessions {
    uint32_t used; /* entries 0..used-1 may hold a SID; an empty one starts with NUL */
    char sid[SHM_SESSIONS_PER_WORKER][16];
};

/* Connections per client address of one worker slot (MAX_CONN_PER_IP): an
 * open-addressing table only its worker writes; the others read it to sum an
 * address over the gateway. A reader racing the writer may miscount one
 * connection for a moment, which a per-address cap can afford; a dead worker's
 * table is cleared by its successor. Reserved like the SID tables. */
#define SHM_IP_SLOTS (1u << 16)
struct shm_ip {
    uint8_t addr[16];  /* IPv6, or IPv4-mapped IPv6 */
    atomic_uint count; /* 0: empty slot */
};
struct shm_iptable {
    struct shm_ip slot[SHM_IP_SLOTS];
};

struct shm_block *shm_create(int nworkers);
void shm_destroy(struct shm_block *b);
struct shm_sessions *shm_sessions(struct shm_block *b, int worker);

/* Connections from addr on every worker of the gateway. */
unsigned shm_ip_total(const struct shm_block *b, const uint8_t addr[16]);
/* Worker `worker` counts one more (+1) or one less (-1) connection from addr.
 * Returns -1 when its table is full (the connection is then not counted). */
int shm_ip_add(struct shm_block *b, int worker, const uint8_t addr[16], int delta);
void shm_ip_clear(struct shm_block *b, int worker);

#endif
