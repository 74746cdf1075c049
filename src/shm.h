/* shm.h - the small block of memory the master shares with its workers:
 * the gateway-wide client count (MAX_CLIENT_NUM) and, per worker slot, what a
 * replacement worker needs to carry on after its predecessor died. */
#ifndef FOOKING_SHM_H
#define FOOKING_SHM_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#define SHM_MAX_WORKERS 32

struct shm_worker {
    atomic_int pid;
    atomic_int clients;          /* clients this worker holds now */
    atomic_uint_fast64_t sid_ms; /* last SID millisecond used, so a successor never repeats one */
};

struct shm_block {
    atomic_int clients; /* all workers */
    struct shm_worker workers[SHM_MAX_WORKERS];
};

struct shm_block *shm_create(void);
void shm_destroy(struct shm_block *b);

#endif
