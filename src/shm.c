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
    void *ip = mmap(NULL, sizeof(struct shm_iptable) * (size_t)nworkers, PROT_READ | PROT_WRITE,
                    MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (ip == MAP_FAILED) {
        munmap(t, sizeof(struct shm_sessions) * (size_t)nworkers);
        munmap(b, sizeof(*b));
        return NULL;
    }
    b->nworkers = nworkers;
    b->sessions = t;
    b->ips = ip;
    return b;
}

void shm_destroy(struct shm_block *b)
{
    if (!b)
        return;
    munmap(b->ips, sizeof(struct shm_iptable) * (size_t)b->nworkers);
    munmap(b->sessions, sizeof(struct shm_sessions) * (size_t)b->nworkers);
    munmap(b, sizeof(*b));
}

struct shm_sessions *shm_sessions(struct shm_block *b, int worker)
{
    return &b->sessions[worker];
}

/* FNV-1a: the key is an address the kernel gave us, and a collision only
 * costs a longer probe within one worker's table. */
static uint32_t shm_ip_hash(const uint8_t addr[16])
{
    uint32_t h = 2166136261u;
    for (int i = 0; i < 16; i++)
        h = (h ^ addr[i]) * 16777619u;
    return h;
}

/* Slot of addr in t, or of the empty slot where it would go; -1 if full. */
static long shm_ip_find(const struct shm_iptable *t, const uint8_t addr[16])
{
    uint32_t i = shm_ip_hash(addr) & (SHM_IP_SLOTS - 1);
    for (uint32_t n = 0; n < SHM_IP_SLOTS; n++, i = (i + 1) & (SHM_IP_SLOTS - 1)) {
        const struct shm_ip *e = &t->slot[i];
        if (atomic_load(&e->count) == 0 || memcmp(e->addr, addr, 16) == 0)
            return i;
    }
    return -1;
}

unsigned shm_ip_total(const struct shm_block *b, const uint8_t addr[16])
{
    unsigned total = 0;
    for (int w = 0; w < b->nworkers; w++) {
        long i = shm_ip_find(&b->ips[w], addr);
        if (i >= 0 && memcmp(b->ips[w].slot[i].addr, addr, 16) == 0)
            total += atomic_load(&b->ips[w].slot[i].count);
    }
    return total;
}

int shm_ip_add(struct shm_block *b, int worker, const uint8_t addr[16], int delta)
{
    struct shm_iptable *t = &b->ips[worker];
    long i = shm_ip_find(t, addr);
    if (i < 0)
        return -1;
    struct shm_ip *e = &t->slot[i];
    if (atomic_load(&e->count) == 0) {
        if (delta < 0)
            return 0;
        memcpy(e->addr, addr, 16);
        atomic_store(&b->workers[worker].ips_used, 1);
    }
    if (delta > 0 || atomic_fetch_sub(&e->count, 1) != 1) {
        if (delta > 0)
            atomic_fetch_add(&e->count, 1);
        return 0;
    }
    /* The last connection went: delete by shifting later entries of the probe
     * run back, so lookups never stop at a hole (no tombstones to pile up). */
    uint32_t hole = (uint32_t)i, j = (uint32_t)i;
    for (;;) {
        j = (j + 1) & (SHM_IP_SLOTS - 1);
        struct shm_ip *n = &t->slot[j];
        unsigned cnt = atomic_load(&n->count);
        if (cnt == 0)
            break;
        uint32_t home = shm_ip_hash(n->addr) & (SHM_IP_SLOTS - 1);
        /* n may move to the hole if its home is not in (hole, j]. */
        if ((j > hole && (home <= hole || home > j)) || (j < hole && home <= hole && home > j)) {
            memcpy(t->slot[hole].addr, n->addr, 16);
            atomic_store(&t->slot[hole].count, cnt);
            atomic_store(&n->count, 0);
            hole = j;
        }
    }
    return 0;
}

void shm_ip_clear(struct shm_block *b, int worker)
{
    struct shm_iptable *t = &b->ips[worker];
    if (!atomic_exchange(&b->workers[worker].ips_used, 0))
        return; /* never written: leave its pages untouched */
    for (uint32_t i = 0; i < SHM_IP_SLOTS; i++)
        if (atomic_load(&t->slot[i].count))
            atomic_store(&t->slot[i].count, 0);
}
