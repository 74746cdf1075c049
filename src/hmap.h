/* hmap.h - a small hash map: byte-string keys (copied into the map), void *
 * values (never touched by the map). Chained buckets that double as the map
 * grows; keys are hashed with SipHash-1-3 under a per-map random seed, so keys
 * chosen by a peer (channel names) cannot be crafted to collide. No global state. */
#ifndef FOOKING_HMAP_H
#define FOOKING_HMAP_H

#include <stddef.h>

struct hmap;
struct hmap_entry;

struct hmap_iter {
    size_t bucket;
    struct hmap_entry *next;
};

/* hint: expected number of keys (0 is fine). NULL when out of memory. */
struct hmap *hmap_new(size_t hint);
/* Frees the map and its keys; calls free_value (if not NULL) on each value. */
void hmap_free(struct hmap *m, void (*free_value)(void *));

/* The value stored under key, or NULL if none (store no NULL values if you need
 * to tell them apart; hmap_has does). */
void *hmap_get(const struct hmap *m, const void *key, size_t klen);
int hmap_has(const struct hmap *m, const void *key, size_t klen);
/* Inserts or replaces. If old is not NULL it receives the replaced value (NULL if
 * the key is new). Returns 1 if the key was new, 0 if replaced, -1 out of memory
 * (map unchanged). */
int hmap_put(struct hmap *m, const void *key, size_t klen, void *value, void **old);
/* Removes key. Returns 1 and the value in *old (if not NULL), or 0 if absent. */
int hmap_del(struct hmap *m, const void *key, size_t klen, void **old);
size_t hmap_count(const struct hmap *m);

/* Iteration, in no particular order:
 *   struct hmap_iter it; hmap_iter_init(&it);
 *   while (hmap_next(m, &it, &key, &klen, &value)) ...
 * The entry just returned may be deleted during the loop; any other put or del
 * invalidates the iterator. key/klen/value may be NULL if not wanted. */
void hmap_iter_init(struct hmap_iter *it);
int hmap_next(const struct hmap *m, struct hmap_iter *it, const void **key, size_t *klen,
              void **value);

#endif
