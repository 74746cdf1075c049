/* hmap.c - chained hash map. Chaining (rather than open addressing) is what lets
 * an iterator survive deleting the entry it just returned, which is how the
 * router forgets a dropped link's sessions in one pass. Each entry is one
 * allocation holding its key inline. The bucket array only grows: maps shrink
 * back to nothing when their owner frees them (a link's sets), and the long-lived
 * ones (all SIDs) size themselves to the peak, like Redis dicts between rehashes. */
#include "hmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define HMAP_MIN_BUCKETS 8

struct hmap_entry {
    struct hmap_entry *next;
    void *value;
    uint32_t hash; /* SipHash's low half: the bucket index and a quick compare */
    uint32_t klen; /* 40 bytes with a SID: a 48-byte heap chunk */
    unsigned char key[];
};

struct hmap {
    struct hmap_entry **buckets;
    size_t nbuckets; /* a power of two */
    size_t count;
    uint64_t k0, k1; /* SipHash key */
};

#define HMAP_ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define HMAP_SIPROUND                                                                              \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = HMAP_ROTL(v1, 13);                                                                    \
        v1 ^= v0;                                                                                  \
        v0 = HMAP_ROTL(v0, 32);                                                                    \
        v2 += v3;                                                                                  \
        v3 = HMAP_ROTL(v3, 16);                                                                    \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = HMAP_ROTL(v3, 21);                                                                    \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = HMAP_ROTL(v1, 17);                                                                    \
        v1 ^= v2;                                                                                  \
        v2 = HMAP_ROTL(v2, 32);                                                                    \
    } while (0)

/* SipHash-1-3 (as in Redis and Rust's HashMap): fast on short keys like SIDs. */
static uint64_t hmap_hash(const struct hmap *m, const unsigned char *in, size_t n)
{
    uint64_t v0 = 0x736f6d6570736575ULL ^ m->k0, v1 = 0x646f72616e646f6dULL ^ m->k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ m->k0, v3 = 0x7465646279746573ULL ^ m->k1;
    uint64_t b = (uint64_t)n << 56, w;
    size_t i, tail = n & 7;

    for (i = 0; i + 8 <= n; i += 8) {
        w = 0;
        for (int j = 0; j < 8; j++)
            w |= (uint64_t)in[i + j] << (8 * j);
        v3 ^= w;
        HMAP_SIPROUND;
        v0 ^= w;
    }
    for (size_t j = 0; j < tail; j++)
        b |= (uint64_t)in[i + j] << (8 * j);
    v3 ^= b;
    HMAP_SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    HMAP_SIPROUND;
    HMAP_SIPROUND;
    HMAP_SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

struct hmap *hmap_new(size_t hint)
{
    struct hmap *m = calloc(1, sizeof(*m));
    uint64_t seed[2];

    if (m == NULL)
        goto fail;
    m->nbuckets = HMAP_MIN_BUCKETS;
    while (m->nbuckets < hint && m->nbuckets < ((size_t)1 << 40))
        m->nbuckets <<= 1;
    m->buckets = calloc(m->nbuckets, sizeof(*m->buckets));
    if (m->buckets == NULL)
        goto fail;
    /* The seed only needs to be unguessable by peers; if the kernel cannot give
     * one, a weaker one still keeps the map correct. */
    if (getrandom(seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed)) {
        seed[0] = (uint64_t)(uintptr_t)m ^ (uint64_t)time(NULL);
        seed[1] = (uint64_t)(uintptr_t)&seed ^ (uint64_t)clock();
    }
    m->k0 = seed[0];
    m->k1 = seed[1];
    return m;
fail:
    free(m);
    return NULL;
}

void hmap_free(struct hmap *m, void (*free_value)(void *))
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->nbuckets; i++) {
        struct hmap_entry *e = m->buckets[i], *next;
        for (; e != NULL; e = next) {
            next = e->next;
            if (free_value != NULL)
                free_value(e->value);
            free(e);
        }
    }
    free(m->buckets);
    free(m);
}

static struct hmap_entry **hmap_find(const struct hmap *m, const void *key, size_t klen,
                                     uint32_t hash)
{
    struct hmap_entry **pe = &m->buckets[hash & (m->nbuckets - 1)];

    for (; *pe != NULL; pe = &(*pe)->next) {
        struct hmap_entry *e = *pe;
        if (e->hash == hash && e->klen == klen && memcmp(e->key, key, klen) == 0)
            break;
    }
    return pe;
}

void *hmap_get(const struct hmap *m, const void *key, size_t klen)
{
    struct hmap_entry *e = *hmap_find(m, key, klen, (uint32_t)hmap_hash(m, key, klen));
    return e != NULL ? e->value : NULL;
}

int hmap_has(const struct hmap *m, const void *key, size_t klen)
{
    return *hmap_find(m, key, klen, (uint32_t)hmap_hash(m, key, klen)) != NULL;
}

/* Doubles the bucket array. Failing to grow is not an error: chains get longer. */
static void hmap_grow(struct hmap *m)
{
    size_t n = m->nbuckets * 2;
    struct hmap_entry **b = calloc(n, sizeof(*b));

    if (b == NULL)
        return;
    for (size_t i = 0; i < m->nbuckets; i++) {
        struct hmap_entry *e = m->buckets[i], *next;
        for (; e != NULL; e = next) {
            next = e->next;
            e->next = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
        }
    }
    free(m->buckets);
    m->buckets = b;
    m->nbuckets = n;
}

int hmap_put(struct hmap *m, const void *key, size_t klen, void *value, void **old)
{
    uint32_t hash = (uint32_t)hmap_hash(m, key, klen);
    struct hmap_entry **pe = hmap_find(m, key, klen, hash), *e;

    if (*pe != NULL) {
        if (old != NULL)
            *old = (*pe)->value;
        (*pe)->value = value;
        return 0;
    }
    if (klen > UINT32_MAX || (e = malloc(sizeof(*e) + klen)) == NULL)
        return -1;
    e->hash = hash;
    e->value = value;
    e->klen = (uint32_t)klen;
    if (klen > 0)
        memcpy(e->key, key, klen);
    e->next = NULL;
    *pe = e; /* chain tail: keeps pe valid without a second lookup */
    m->count++;
    if (m->count > m->nbuckets)
        hmap_grow(m);
    if (old != NULL)
        *old = NULL;
    return 1;
}

int hmap_del(struct hmap *m, const void *key, size_t klen, void **old)
{
    struct hmap_entry **pe = hmap_find(m, key, klen, (uint32_t)hmap_hash(m, key, klen)), *e = *pe;

    if (e == NULL)
        return 0;
    *pe = e->next;
    if (old != NULL)
        *old = e->value;
    free(e);
    m->count--;
    return 1;
}

size_t hmap_count(const struct hmap *m)
{
    return m->count;
}

void hmap_iter_init(struct hmap_iter *it)
{
    it->bucket = 0;
    it->next = NULL;
}

int hmap_next(const struct hmap *m, struct hmap_iter *it, const void **key, size_t *klen,
              void **value)
{
    struct hmap_entry *e;

    while (it->next == NULL) {
        if (it->bucket >= m->nbuckets)
            return 0;
        it->next = m->buckets[it->bucket++];
    }
    e = it->next;
    /* Step past e now, so the caller may free it. */
    it->next = e->next;
    if (key != NULL)
        *key = e->key;
    if (klen != NULL)
        *klen = e->klen;
    if (value != NULL)
        *value = e->value;
    return 1;
}
