/* rtable.c - the router's tables. Every fact is kept twice, once from the
 * cluster's side and once from the link's:
 *   t->sessions  SID -> link holding it        l->sids      SIDs it holds
 *   t->channels  name -> set of links          l->channels  channels it joined
 *   t->gateways  server id, worker id -> link
 * so that forgetting a dropped link walks its own entries, not every session
 * of the cluster. A channel's set is keyed by the link pointer; the set is
 * freed when its last link leaves, so t->channels holds no empty channel. */
#include "rtable.h"

#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "hmap.h"
#include "rmsg.h"

#define RTABLE_GW_KEY_LEN 8

struct rtable_link {
    void *owner;
    uint32_t server_id, worker_id;
    unsigned char gw_key[RTABLE_GW_KEY_LEN]; /* both ids, big-endian */
    struct hmap *sids;                       /* values unused */
    struct hmap *channels;                   /* values unused */
    size_t group; /* during rtable_split: 1 + index of its group; 0 otherwise */
    TAILQ_ENTRY(rtable_link) entry;
};

struct rtable {
    struct hmap *sessions, *channels, *gateways;
    TAILQ_HEAD(, rtable_link) links;
    size_t nlinks;
};

struct rtable *rtable_new(void)
{
    struct rtable *t = calloc(1, sizeof(*t));

    if (t == NULL)
        return NULL;
    TAILQ_INIT(&t->links);
    t->sessions = hmap_new(1024);
    t->channels = hmap_new(0);
    t->gateways = hmap_new(0);
    if (t->sessions == NULL || t->channels == NULL || t->gateways == NULL) {
        rtable_free(t);
        return NULL;
    }
    return t;
}

void rtable_free(struct rtable *t)
{
    struct rtable_link *l;

    if (t == NULL)
        return;
    while ((l = TAILQ_FIRST(&t->links)) != NULL)
        rtable_link_forget(t, l, NULL);
    /* Every link is forgotten, so the maps are empty (or never were made). */
    hmap_free(t->sessions, NULL);
    hmap_free(t->channels, NULL);
    hmap_free(t->gateways, NULL);
    free(t);
}

static void rtable_gw_key(unsigned char key[RTABLE_GW_KEY_LEN], uint32_t server, uint32_t worker)
{
    for (int i = 0; i < 4; i++) {
        key[i] = (unsigned char)(server >> (24 - 8 * i));
        key[4 + i] = (unsigned char)(worker >> (24 - 8 * i));
    }
}

/* ---- links ---- */

struct rtable_link *rtable_link_add(struct rtable *t, void *owner, uint32_t server_id,
                                    uint32_t worker_id)
{
    struct rtable_link *l = calloc(1, sizeof(*l));

    if (l == NULL)
        return NULL;
    l->owner = owner;
    l->server_id = server_id;
    l->worker_id = worker_id;
    rtable_gw_key(l->gw_key, server_id, worker_id);
    l->sids = hmap_new(0);
    l->channels = hmap_new(0);
    if (l->sids == NULL || l->channels == NULL
        || hmap_put(t->gateways, l->gw_key, sizeof(l->gw_key), l, NULL) < 0) {
        hmap_free(l->sids, NULL);
        hmap_free(l->channels, NULL);
        free(l);
        return NULL;
    }
    TAILQ_INSERT_TAIL(&t->links, l, entry);
    t->nlinks++;
    return l;
}

/* Takes l out of the channel's set; frees the set when l was its last link.
 * Returns the links left. */
static size_t rtable_channel_leave(struct rtable *t, const void *name, size_t len,
                                   struct rtable_link *l)
{
    struct hmap *set = hmap_get(t->channels, name, len);
    size_t left;

    if (set == NULL)
        return 0;
    hmap_del(set, &l, sizeof(l), NULL);
    if ((left = hmap_count(set)) == 0) {
        hmap_del(t->channels, name, len, NULL);
        hmap_free(set, NULL);
    }
    return left;
}

void rtable_link_forget(struct rtable *t, struct rtable_link *l, struct rtable_forgot *out)
{
    struct rtable_forgot f = {hmap_count(l->sids), hmap_count(l->channels), 0};
    struct hmap_iter it;
    const void *key;
    size_t klen;

    hmap_iter_init(&it);
    while (hmap_next(l->sids, &it, &key, &klen, NULL)) {
        /* Defensive: a SID that moved is deleted from its old link's set. */
        if (hmap_get(t->sessions, key, klen) == l)
            hmap_del(t->sessions, key, klen, NULL);
    }
    hmap_iter_init(&it);
    while (hmap_next(l->channels, &it, &key, &klen, NULL)) {
        if (rtable_channel_leave(t, key, klen, l) == 0)
            f.emptied++;
    }
    if (hmap_get(t->gateways, l->gw_key, sizeof(l->gw_key)) == l)
        hmap_del(t->gateways, l->gw_key, sizeof(l->gw_key), NULL);
    TAILQ_REMOVE(&t->links, l, entry);
    t->nlinks--;
    hmap_free(l->sids, NULL);
    hmap_free(l->channels, NULL);
    free(l);
    if (out != NULL)
        *out = f;
}

void *rtable_link_owner(const struct rtable_link *l)
{
    return l->owner;
}

uint32_t rtable_link_server_id(const struct rtable_link *l)
{
    return l->server_id;
}

uint32_t rtable_link_worker_id(const struct rtable_link *l)
{
    return l->worker_id;
}

size_t rtable_link_sessions(const struct rtable_link *l)
{
    return hmap_count(l->sids);
}

size_t rtable_link_channels(const struct rtable_link *l)
{
    return hmap_count(l->channels);
}

void *rtable_gateway(const struct rtable *t, uint32_t server_id, uint32_t worker_id)
{
    unsigned char key[RTABLE_GW_KEY_LEN];
    struct rtable_link *l;

    rtable_gw_key(key, server_id, worker_id);
    l = hmap_get(t->gateways, key, sizeof(key));
    return l != NULL ? l->owner : NULL;
}

struct rtable_link *rtable_links_first(const struct rtable *t)
{
    return TAILQ_FIRST(&t->links);
}

struct rtable_link *rtable_links_next(const struct rtable_link *l)
{
    return TAILQ_NEXT(l, entry);
}

/* ---- sessions ---- */

int rtable_sessions_add(struct rtable *t, struct rtable_link *l, const unsigned char *sids,
                        size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const unsigned char *sid = sids + i * RMSG_SID_LEN;
        struct rtable_link *old;

        if (hmap_put(t->sessions, sid, RMSG_SID_LEN, l, (void **)&old) < 0)
            return -1;
        if (old == l)
            continue;
        if (old != NULL)
            hmap_del(old->sids, sid, RMSG_SID_LEN, NULL);
        if (hmap_put(l->sids, sid, RMSG_SID_LEN, NULL, NULL) < 0) {
            hmap_del(t->sessions, sid, RMSG_SID_LEN, NULL);
            return -1;
        }
    }
    return 0;
}

size_t rtable_sessions_remove(struct rtable *t, struct rtable_link *l, const unsigned char *sids,
                              size_t n)
{
    size_t gone = 0;

    for (size_t i = 0; i < n; i++) {
        const unsigned char *sid = sids + i * RMSG_SID_LEN;

        if (hmap_get(t->sessions, sid, RMSG_SID_LEN) == l) {
            hmap_del(t->sessions, sid, RMSG_SID_LEN, NULL);
            hmap_del(l->sids, sid, RMSG_SID_LEN, NULL);
            gone++;
        }
    }
    return gone;
}

void *rtable_session_owner(const struct rtable *t, const unsigned char *sid)
{
    struct rtable_link *l = hmap_get(t->sessions, sid, RMSG_SID_LEN);

    return l != NULL ? l->owner : NULL;
}

/* Two passes, like a counting sort: the first finds each SID's link and counts
 * per link, the second copies each SID into its link's run of the buffer. No
 * allocation once the split's buffers have grown to the largest message. */
int rtable_split(struct rtable *t, const unsigned char *sids, size_t n, struct rtable_split *out)
{
    const uint32_t none = UINT32_MAX;
    struct rtable_link *l;
    size_t off = 0;

    out->ngroups = 0;
    out->unknown = 0;
    if (n > UINT32_MAX - 1)
        return -1;
    if (n > out->cap) {
        unsigned char *buf = realloc(out->buf, n * RMSG_SID_LEN);
        if (buf != NULL)
            out->buf = buf;
        uint32_t *slot = realloc(out->slot, n * sizeof(*slot));
        if (slot != NULL)
            out->slot = slot;
        struct rtable_group *groups = realloc(out->groups, n * sizeof(*groups));
        if (groups != NULL)
            out->groups = groups;
        if (buf == NULL || slot == NULL || groups == NULL)
            return -1;
        out->cap = n;
    }
    for (size_t i = 0; i < n; i++) {
        l = hmap_get(t->sessions, sids + i * RMSG_SID_LEN, RMSG_SID_LEN);
        if (l == NULL) {
            out->slot[i] = none;
            out->unknown++;
            continue;
        }
        if (l->group == 0) {
            out->groups[out->ngroups] = (struct rtable_group){l, NULL, 0};
            l->group = ++out->ngroups;
        }
        out->slot[i] = (uint32_t)(l->group - 1);
        out->groups[l->group - 1].n++;
    }
    /* The groups hold their links until here: now their runs, and owners. */
    for (size_t g = 0; g < out->ngroups; g++) {
        struct rtable_group *grp = &out->groups[g];
        l = grp->owner;
        l->group = 0;
        grp->owner = l->owner;
        grp->sids = out->buf + off;
        off += grp->n * RMSG_SID_LEN;
        grp->n = 0;
    }
    for (size_t i = 0; i < n; i++) {
        struct rtable_group *grp;
        if (out->slot[i] == none)
            continue;
        grp = &out->groups[out->slot[i]];
        memcpy(grp->sids + grp->n++ * RMSG_SID_LEN, sids + i * RMSG_SID_LEN, RMSG_SID_LEN);
    }
    return 0;
}

void rtable_split_free(struct rtable_split *s)
{
    free(s->buf);
    free(s->slot);
    free(s->groups);
    memset(s, 0, sizeof(*s));
}

/* ---- channels ---- */

int rtable_subscribe(struct rtable *t, struct rtable_link *l, const void *name, size_t len,
                     size_t *nlinks)
{
    struct hmap *set = hmap_get(t->channels, name, len);
    int created = 0;

    if (hmap_has(l->channels, name, len)) {
        if (nlinks != NULL)
            *nlinks = hmap_count(set);
        return 0;
    }
    if (set == NULL) {
        if ((set = hmap_new(0)) == NULL || hmap_put(t->channels, name, len, set, NULL) < 0) {
            hmap_free(set, NULL);
            return -1;
        }
        created = 1;
    }
    if (hmap_put(set, &l, sizeof(l), l, NULL) < 0)
        goto fail;
    if (hmap_put(l->channels, name, len, NULL, NULL) < 0) {
        hmap_del(set, &l, sizeof(l), NULL);
        goto fail;
    }
    if (nlinks != NULL)
        *nlinks = hmap_count(set);
    return 1;
fail:
    if (created) {
        hmap_del(t->channels, name, len, NULL);
        hmap_free(set, NULL);
    }
    return -1;
}

int rtable_unsubscribe(struct rtable *t, struct rtable_link *l, const void *name, size_t len,
                       size_t *nlinks)
{
    int was = hmap_del(l->channels, name, len, NULL);
    size_t left = was ? rtable_channel_leave(t, name, len, l) : rtable_channel_links(t, name, len);

    if (nlinks != NULL)
        *nlinks = left;
    return was;
}

size_t rtable_channel_links(const struct rtable *t, const void *name, size_t len)
{
    struct hmap *set = hmap_get(t->channels, name, len);

    return set != NULL ? hmap_count(set) : 0;
}

void rtable_channel_each(const struct rtable *t, const void *name, size_t len,
                         void (*fn)(void *owner, void *arg), void *arg)
{
    struct hmap *set = hmap_get(t->channels, name, len);
    struct rtable_link *l;
    struct hmap_iter it;

    if (set == NULL)
        return;
    hmap_iter_init(&it);
    while (hmap_next(set, &it, NULL, NULL, (void **)&l))
        fn(l->owner, arg);
}

void rtable_with_sessions_each(const struct rtable *t, void (*fn)(void *owner, void *arg),
                               void *arg)
{
    struct rtable_link *l;

    TAILQ_FOREACH(l, &t->links, entry)
    {
        if (hmap_count(l->sids) > 0)
            fn(l->owner, arg);
    }
}

/* ---- INFO ---- */

void rtable_totals(const struct rtable *t, struct rtable_totals *out)
{
    out->sessions = hmap_count(t->sessions);
    out->channels = hmap_count(t->channels);
    out->links = t->nlinks;
}
