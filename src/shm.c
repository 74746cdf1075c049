/* shm.c - anonymous shared mappings created by the master before it forks. */
#include "shm.h"

#include <stddef.h>
#include <string.h>
#include <sys/mman.h>

struct shm_block *shm_create(int nworkers)
{
    void *p = mmap(NULL, sizeof(struct shm_block), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    struct shm_block *b = p;
    memset(b, 0, sizeof(*b));
    void *t = mmap(NULL, sizeof(struct shm_sessions) * (size_t)nworkers, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (t == MAP_FAILED) {
        munmap(b, sizeof(*b));
        return NULL;
    }
    b->nworkers = nworkers;
    b->sessions = t;
    return b;
}

void shm_destroy(struct shm_block *b)
{
    if (!b)
        return;
    munmap(b->sessions, sizeof(struct shm_sessions) * (size_t)b->nworkers);
    munmap(b, sizeof(*b));
}

struct shm_sessions *shm_sessions(struct shm_block *b, int worker)
{
    return &b->sessions[worker];
}
