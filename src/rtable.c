/* rtable.c - the router's tables. Every fact is kept twice, once from the
 * cluster's side and once from the link's:
 *   t->sessions  SID -> its session (link, uid, memberships)   l->sessions  its sessions
 *   t->channels  name -> set of links (CH_SUB)                  l->channels  channels it joined
 *   t->uids      uid -> its sessions, with a count per link
 *   t->mchans    name -> its member sessions, with a count per link
 *   t->gateways  server id, worker id -> link
 * so that forgetting a dropped link walks its own sessions, each of which
 * unhooks its uid and memberships in time proportional to what it had, never
 * every session of the cluster. A channel's set is keyed by the link pointer;
 * sets, uids and member channels are freed with their last entry, so no map
 * holds an empty one.
 *
 * Memory, measured by bench/rtable_mem.c (make build/rtable_mem; glibc malloc
 * on x86-64, mallinfo2 bytes in use with the mmapped bucket arrays, 100K
 * sessions on 8 links): a session with no uid and no channel 154 bytes;
 * binding it to a uid of its own (11 bytes) 154 more (the uid's record, its map
 * entry and bucket); another session of a bound uid nothing more on the same
 * link, 48 bytes once per other link holding the uid; each channel membership
 * 121 bytes (a member record and its entry in the channel's SID map). */
#include "rtable.h"

#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "hmap.h"
#include "rmsg.h"

#define RTABLE_GW_KEY_LEN 8

/* How many of a uid's sessions, or of a channel's members, a link holds. Most
 * uids and many channels live on one link: that one is inline. */
struct rtable_count {
    struct rtable_link *link;
    size_t n;
};
struct rtable_counts {
    struct rtable_count *v; /* &one, or an array */
    uint32_t n, cap;
    struct rtable_count one;
};

struct rtable_session {
    unsigned char sid[RMSG_SID_LEN];
    struct rtable_link *link;
    struct rtable_uid *uid; /* NULL: unbound */
    LIST_ENTRY(rtable_session) link_entry;
    LIST_ENTRY(rtable_session) uid_entry;
    LIST_HEAD(, rtable_member) members;
};

struct rtable_uid {
    LIST_HEAD(, rtable_session) sessions;
    size_t n;
    struct rtable_counts links;
    unsigned char len;
    unsigned char bytes[];
};

/* A channel's members (CH_ADD), apart from its subscribed links (CH_SUB). */
struct rtable_mchan {
    struct hmap *members; /* SID -> struct rtable_member */
    struct rtable_counts links;
    unsigned char len;
    unsigned char name[];
};

struct rtable_member {
    struct rtable_session *s;
    struct rtable_mchan *ch;
    LIST_ENTRY(rtable_member) entry; /* s->members */
};

struct rtable_link {
    void *owner;
    uint32_t server_id, worker_id;
    unsigned char gw_key[RTABLE_GW_KEY_LEN]; /* both ids, big-endian */
    LIST_HEAD(, rtable_session) sessions;
    size_t nsessions;
    struct hmap *channels; /* values unused */
    size_t group; /* during rtable_split / rtable_uid_split: 1 + index of its group; 0 otherwise */
    TAILQ_ENTRY(rtable_link) entry;
};

struct rtable {
    struct hmap *sessions, *channels, *gateways, *uids, *mchans;
    TAILQ_HEAD(, rtable_link) links;
    size_t nlinks;
};

static void rtable_counts_init(struct rtable_counts *c)
{
    c->v = &c->one;
    c->n = 0;
    c->cap = 1;
}

static void rtable_counts_free(struct rtable_counts *c)
{
    if (c->v != &c->one)
        free(c->v);
}

static struct rtable_count *rtable_counts_find(const struct rtable_counts *c,
                                               const struct rtable_link *l)
{
    for (uint32_t i = 0; i < c->n; i++)
        if (c->v[i].link == l)
            return &c->v[i];
    return NULL;
}

static int rtable_counts_add(struct rtable_counts *c, struct rtable_link *l)
{
    struct rtable_count *e = rtable_counts_find(c, l);

    if (e != NULL) {
        e->n++;
        return 0;
    }
    if (c->n == c->cap) {
        uint32_t cap = c->cap * 2;
        struct rtable_count *v = malloc(cap * sizeof(*v));
        if (v == NULL)
            return -1;
        memcpy(v, c->v, c->n * sizeof(*v));
        rtable_counts_free(c);
        c->v = v;
        c->cap = cap;
    }
    c->v[c->n++] = (struct rtable_count){l, 1};
    return 0;
}

static void rtable_counts_sub(struct rtable_counts *c, const struct rtable_link *l)
{
    struct rtable_count *e = rtable_counts_find(c, l);

    if (e != NULL && --e->n == 0)
        *e = c->v[--c->n];
}

struct rtable *rtable_new(void)
{
    struct rtable *t = calloc(1, sizeof(*t));

    if (t == NULL)
        return NULL;
    TAILQ_INIT(&t->links);
    t->sessions = hmap_new(1024);
    t->channels = hmap_new(0);
    t->gateways = hmap_new(0);
    t->uids = hmap_new(0);
    t->mchans = hmap_new(0);
    if (t->sessions == NULL || t->channels == NULL || t->gateways == NULL || t->uids == NULL
        || t->mchans == NULL) {
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
    hmap_free(t->uids, NULL);
    hmap_free(t->mchans, NULL);
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
    LIST_INIT(&l->sessions);
    l->channels = hmap_new(0);
    if (l->channels == NULL || hmap_put(t->gateways, l->gw_key, sizeof(l->gw_key), l, NULL) < 0) {
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

static void rtable_session_drop(struct rtable *t, struct rtable_session *s);

void rtable_link_forget(struct rtable *t, struct rtable_link *l, struct rtable_forgot *out)
{
    struct rtable_forgot f = {l->nsessions, hmap_count(l->channels), 0};
    struct rtable_session *sess;
    struct hmap_iter it;
    const void *key;
    size_t klen;

    while ((sess = LIST_FIRST(&l->sessions)) != NULL)
        rtable_session_drop(t, sess);
    hmap_iter_init(&it);
    while (hmap_next(l->channels, &it, &key, &klen, NULL)) {
        if (rtable_channel_leave(t, key, klen, l) == 0)
            f.emptied++;
    }
    if (hmap_get(t->gateways, l->gw_key, sizeof(l->gw_key)) == l)
        hmap_del(t->gateways, l->gw_key, sizeof(l->gw_key), NULL);
    TAILQ_REMOVE(&t->links, l, entry);
    t->nlinks--;
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
    return l->nsessions;
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

/* Takes the session off its uid; frees the uid with its last session. */
static void rtable_uid_unlink(struct rtable *t, struct rtable_session *s)
{
    struct rtable_uid *u = s->uid;

    if (u == NULL)
        return;
    LIST_REMOVE(s, uid_entry);
    rtable_counts_sub(&u->links, s->link);
    s->uid = NULL;
    if (--u->n == 0) {
        hmap_del(t->uids, u->bytes, u->len, NULL);
        rtable_counts_free(&u->links);
        free(u);
    }
}

static void rtable_member_free(struct rtable *t, struct rtable_member *m)
{
    struct rtable_mchan *ch = m->ch;

    LIST_REMOVE(m, entry);
    hmap_del(ch->members, m->s->sid, RMSG_SID_LEN, NULL);
    rtable_counts_sub(&ch->links, m->s->link);
    free(m);
    if (hmap_count(ch->members) == 0) {
        hmap_del(t->mchans, ch->name, ch->len, NULL);
        hmap_free(ch->members, NULL);
        rtable_counts_free(&ch->links);
        free(ch);
    }
}

/* What the session's gateway told us about it (uid, channels) goes: CLOSE, a
 * move to another link, a forgotten link. */
static void rtable_session_clear(struct rtable *t, struct rtable_session *s)
{
    struct rtable_member *m;

    rtable_uid_unlink(t, s);
    while ((m = LIST_FIRST(&s->members)) != NULL)
        rtable_member_free(t, m);
}

void rtable_link_clear(struct rtable *t, struct rtable_link *l)
{
    struct rtable_session *s;

    LIST_FOREACH(s, &l->sessions, link_entry)
    rtable_session_clear(t, s);
}

static void rtable_session_drop(struct rtable *t, struct rtable_session *s)
{
    rtable_session_clear(t, s);
    LIST_REMOVE(s, link_entry);
    s->link->nsessions--;
    hmap_del(t->sessions, s->sid, RMSG_SID_LEN, NULL);
    free(s);
}

int rtable_sessions_add(struct rtable *t, struct rtable_link *l, const unsigned char *sids,
                        size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const unsigned char *sid = sids + i * RMSG_SID_LEN;
        struct rtable_session *s = hmap_get(t->sessions, sid, RMSG_SID_LEN);

        if (s != NULL && s->link == l)
            continue;
        if (s != NULL) {
            /* Moved: its old gateway's word on it no longer holds; the new
             * one tells its own. */
            rtable_session_clear(t, s);
            LIST_REMOVE(s, link_entry);
            s->link->nsessions--;
        } else {
            if ((s = calloc(1, sizeof(*s))) == NULL)
                return -1;
            memcpy(s->sid, sid, RMSG_SID_LEN);
            LIST_INIT(&s->members);
            if (hmap_put(t->sessions, sid, RMSG_SID_LEN, s, NULL) < 0) {
                free(s);
                return -1;
            }
        }
        s->link = l;
        LIST_INSERT_HEAD(&l->sessions, s, link_entry);
        l->nsessions++;
    }
    return 0;
}

size_t rtable_sessions_remove(struct rtable *t, struct rtable_link *l, const unsigned char *sids,
                              size_t n)
{
    size_t gone = 0;

    for (size_t i = 0; i < n; i++) {
        struct rtable_session *s = hmap_get(t->sessions, sids + i * RMSG_SID_LEN, RMSG_SID_LEN);

        if (s != NULL && s->link == l) {
            rtable_session_drop(t, s);
            gone++;
        }
    }
    return gone;
}

void *rtable_session_owner(const struct rtable *t, const unsigned char *sid)
{
    struct rtable_session *s = hmap_get(t->sessions, sid, RMSG_SID_LEN);

    return s != NULL ? s->link->owner : NULL;
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
        struct rtable_session *s = hmap_get(t->sessions, sids + i * RMSG_SID_LEN, RMSG_SID_LEN);
        if (s == NULL) {
            out->slot[i] = none;
            out->unknown++;
            continue;
        }
        l = s->link;
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
        if (l->nsessions > 0)
            fn(l->owner, arg);
    }
}

/* ---- uids ---- */

/* The session, if known and (with only) held by that link. */
static struct rtable_session *
rtable_session_of(const struct rtable *t, const struct rtable_link *only, const unsigned char *sid)
{
    struct rtable_session *s = hmap_get(t->sessions, sid, RMSG_SID_LEN);

    return s != NULL && (only == NULL || s->link == only) ? s : NULL;
}

int rtable_bind(struct rtable *t, struct rtable_link *only, const unsigned char *sids, size_t n,
                const void *uid, size_t len, size_t *applied)
{
    size_t done = 0;
    int rc = 0;

    if (len == 0 || len > RMSG_MAX_UID)
        return -1;
    for (size_t i = 0; i < n; i++) {
        struct rtable_session *s = rtable_session_of(t, only, sids + i * RMSG_SID_LEN);
        struct rtable_uid *u;
        int created = 0;

        if (s == NULL)
            continue;
        done++;
        if (s->uid != NULL && s->uid->len == len && memcmp(s->uid->bytes, uid, len) == 0)
            continue;
        if ((u = hmap_get(t->uids, uid, len)) == NULL) {
            if ((u = malloc(sizeof(*u) + len)) == NULL) {
                rc = -1;
                break;
            }
            LIST_INIT(&u->sessions);
            u->n = 0;
            rtable_counts_init(&u->links);
            u->len = (unsigned char)len;
            memcpy(u->bytes, uid, len);
            if (hmap_put(t->uids, uid, len, u, NULL) < 0) {
                free(u);
                rc = -1;
                break;
            }
            created = 1;
        }
        if (rtable_counts_add(&u->links, s->link) < 0) {
            if (created) {
                hmap_del(t->uids, uid, len, NULL);
                free(u);
            }
            rc = -1;
            break;
        }
        rtable_uid_unlink(t, s);
        s->uid = u;
        LIST_INSERT_HEAD(&u->sessions, s, uid_entry);
        u->n++;
    }
    if (applied != NULL)
        *applied = rc == 0 ? done : done - 1;
    return rc;
}

size_t rtable_unbind(struct rtable *t, struct rtable_link *only, const unsigned char *sids,
                     size_t n)
{
    size_t gone = 0;

    for (size_t i = 0; i < n; i++) {
        struct rtable_session *s = rtable_session_of(t, only, sids + i * RMSG_SID_LEN);

        if (s != NULL && s->uid != NULL) {
            rtable_uid_unlink(t, s);
            gone++;
        }
    }
    return gone;
}

size_t rtable_uid_sessions(const struct rtable *t, const void *uid, size_t len)
{
    struct rtable_uid *u = hmap_get(t->uids, uid, len);

    return u != NULL ? u->n : 0;
}

void rtable_uid_each(const struct rtable *t, const void *uid, size_t len,
                     void (*fn)(const unsigned char *sid, void *owner, void *arg), void *arg)
{
    struct rtable_uid *u = hmap_get(t->uids, uid, len);
    struct rtable_session *s;

    if (u == NULL)
        return;
    LIST_FOREACH(s, &u->sessions, uid_entry)
    fn(s->sid, s->link->owner, arg);
}

size_t rtable_uid_links_each(const struct rtable *t, const void *uid, size_t len,
                             void (*fn)(void *owner, size_t n, void *arg), void *arg)
{
    struct rtable_uid *u = hmap_get(t->uids, uid, len);

    if (u == NULL)
        return 0;
    for (uint32_t i = 0; fn != NULL && i < u->links.n; i++)
        fn(u->links.v[i].link->owner, u->links.v[i].n, arg);
    return u->links.n;
}

const unsigned char *rtable_session_uid(const struct rtable *t, const unsigned char *sid,
                                        size_t *len)
{
    struct rtable_session *s = hmap_get(t->sessions, sid, RMSG_SID_LEN);

    if (s == NULL || s->uid == NULL)
        return NULL;
    *len = s->uid->len;
    return s->uid->bytes;
}

/* Like rtable_split: count each link's bytes, lay the runs out, copy. */
int rtable_uid_split(struct rtable *t, const unsigned char *list, size_t len,
                     struct rtable_uid_split *out)
{
    const unsigned char *uid;
    size_t off = 0, ulen, total = 0, pos = 0;
    struct rtable_uid *u;

    out->ngroups = 0;
    out->unknown = 0;
    if (t->nlinks > out->groupcap) {
        struct rtable_ugroup *g = realloc(out->groups, t->nlinks * sizeof(*g));
        if (g == NULL)
            return -1;
        out->groups = g;
        out->groupcap = t->nlinks;
    }
    while (rmsg_uids_next(list, len, &off, &uid, &ulen) == 1) {
        if ((u = hmap_get(t->uids, uid, ulen)) == NULL) {
            out->unknown++;
            continue;
        }
        for (uint32_t i = 0; i < u->links.n; i++) {
            struct rtable_link *l = u->links.v[i].link;
            if (l->group == 0) {
                out->groups[out->ngroups] = (struct rtable_ugroup){l, NULL, 0};
                l->group = ++out->ngroups;
            }
            out->groups[l->group - 1].len += 1 + ulen;
            total += 1 + ulen;
        }
    }
    if (total > out->bufcap) {
        unsigned char *b = realloc(out->buf, total);
        if (b == NULL) {
            for (size_t g = 0; g < out->ngroups; g++)
                ((struct rtable_link *)out->groups[g].owner)->group = 0;
            out->ngroups = 0;
            return -1;
        }
        out->buf = b;
        out->bufcap = total;
    }
    for (size_t g = 0; g < out->ngroups; g++) {
        out->groups[g].list = out->buf + pos;
        pos += out->groups[g].len;
        out->groups[g].len = 0;
    }
    off = 0;
    while (rmsg_uids_next(list, len, &off, &uid, &ulen) == 1) {
        if ((u = hmap_get(t->uids, uid, ulen)) == NULL)
            continue;
        for (uint32_t i = 0; i < u->links.n; i++) {
            struct rtable_ugroup *g = &out->groups[u->links.v[i].link->group - 1];
            g->list[g->len] = (unsigned char)ulen;
            memcpy(g->list + g->len + 1, uid, ulen);
            g->len += 1 + ulen;
        }
    }
    for (size_t g = 0; g < out->ngroups; g++) {
        struct rtable_link *l = out->groups[g].owner;
        l->group = 0;
        out->groups[g].owner = l->owner;
    }
    return 0;
}

void rtable_uid_split_free(struct rtable_uid_split *s)
{
    free(s->buf);
    free(s->groups);
    memset(s, 0, sizeof(*s));
}

/* ---- channel members ---- */

int rtable_join(struct rtable *t, struct rtable_link *only, const unsigned char *sids, size_t n,
                const void *name, size_t len, size_t *applied)
{
    struct rtable_mchan *ch = hmap_get(t->mchans, name, len);
    size_t done = 0;
    int rc = 0;

    if (len == 0 || len > RMSG_MAX_CHANNEL)
        return -1;
    for (size_t i = 0; i < n; i++) {
        struct rtable_session *s = rtable_session_of(t, only, sids + i * RMSG_SID_LEN);
        struct rtable_member *m;

        if (s == NULL)
            continue;
        if (ch != NULL && hmap_has(ch->members, s->sid, RMSG_SID_LEN)) {
            done++;
            continue;
        }
        if (ch == NULL) {
            if ((ch = malloc(sizeof(*ch) + len)) == NULL) {
                rc = -1;
                break;
            }
            ch->len = (unsigned char)len;
            memcpy(ch->name, name, len);
            rtable_counts_init(&ch->links);
            if ((ch->members = hmap_new(0)) == NULL
                || hmap_put(t->mchans, name, len, ch, NULL) < 0) {
                hmap_free(ch->members, NULL);
                free(ch);
                ch = NULL;
                rc = -1;
                break;
            }
        }
        if ((m = malloc(sizeof(*m))) == NULL || rtable_counts_add(&ch->links, s->link) < 0) {
            free(m);
            rc = -1;
            break;
        }
        if (hmap_put(ch->members, s->sid, RMSG_SID_LEN, m, NULL) < 0) {
            rtable_counts_sub(&ch->links, s->link);
            free(m);
            rc = -1;
            break;
        }
        m->s = s;
        m->ch = ch;
        LIST_INSERT_HEAD(&s->members, m, entry);
        done++;
    }
    /* A channel made for a member that could not be recorded is not kept. */
    if (ch != NULL && hmap_count(ch->members) == 0) {
        hmap_del(t->mchans, ch->name, ch->len, NULL);
        hmap_free(ch->members, NULL);
        rtable_counts_free(&ch->links);
        free(ch);
    }
    if (applied != NULL)
        *applied = done;
    return rc;
}

size_t rtable_leave(struct rtable *t, struct rtable_link *only, const unsigned char *sids, size_t n,
                    const void *name, size_t len)
{
    size_t gone = 0;

    for (size_t i = 0; i < n; i++) {
        /* Looked up each time: the channel goes with its last member. */
        struct rtable_mchan *ch = hmap_get(t->mchans, name, len);
        struct rtable_member *m;

        if (ch == NULL)
            break;
        m = hmap_get(ch->members, sids + i * RMSG_SID_LEN, RMSG_SID_LEN);
        if (m != NULL && (only == NULL || m->s->link == only)) {
            rtable_member_free(t, m);
            gone++;
        }
    }
    return gone;
}

size_t rtable_members(const struct rtable *t, const void *name, size_t len)
{
    struct rtable_mchan *ch = hmap_get(t->mchans, name, len);

    return ch != NULL ? hmap_count(ch->members) : 0;
}

void rtable_members_each(const struct rtable *t, const void *name, size_t len,
                         void (*fn)(const unsigned char *sid, void *owner, const unsigned char *uid,
                                    size_t uidlen, void *arg),
                         void *arg)
{
    struct rtable_mchan *ch = hmap_get(t->mchans, name, len);
    struct rtable_member *m;
    struct hmap_iter it;

    if (ch == NULL)
        return;
    hmap_iter_init(&it);
    while (hmap_next(ch->members, &it, NULL, NULL, (void **)&m)) {
        struct rtable_uid *u = m->s->uid;
        fn(m->s->sid, m->s->link->owner, u != NULL ? u->bytes : NULL, u != NULL ? u->len : 0, arg);
    }
}

size_t rtable_member_links_each(const struct rtable *t, const void *name, size_t len,
                                void (*fn)(void *owner, size_t n, void *arg), void *arg)
{
    struct rtable_mchan *ch = hmap_get(t->mchans, name, len);

    if (ch == NULL)
        return 0;
    for (uint32_t i = 0; fn != NULL && i < ch->links.n; i++)
        fn(ch->links.v[i].link->owner, ch->links.v[i].n, arg);
    return ch->links.n;
}

void rtable_member_channels_each(const struct rtable *t,
                                 void (*fn)(const unsigned char *name, size_t len, size_t members,
                                            void *arg),
                                 void *arg)
{
    struct rtable_mchan *ch;
    struct hmap_iter it;

    hmap_iter_init(&it);
    while (hmap_next(t->mchans, &it, NULL, NULL, (void **)&ch))
        fn(ch->name, ch->len, hmap_count(ch->members), arg);
}

size_t rtable_member_channels(const struct rtable *t)
{
    return hmap_count(t->mchans);
}

/* ---- INFO ---- */

void rtable_totals(const struct rtable *t, struct rtable_totals *out)
{
    out->sessions = hmap_count(t->sessions);
    out->channels = hmap_count(t->channels);
    out->links = t->nlinks;
    out->uids = hmap_count(t->uids);
}
