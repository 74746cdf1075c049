/* rtable.h - the router's tables (DESIGN §7), without I/O: which gateway link
 * holds each session, which links are subscribed to each channel, which link is
 * each gateway worker's, and the same facts seen from each link. router.c owns
 * the sockets and calls this for every change and every question.
 *
 * A link here is a handle (struct rtable_link *) that carries the caller's own
 * pointer (its owner); queries answer with owners, so the caller gets back its
 * connection without a lookup. SIDs are RMSG_SID_LEN bytes, passed as packed
 * arrays, as they come in a message's S. */
#ifndef FOOKING_RTABLE_H
#define FOOKING_RTABLE_H

#include <stddef.h>
#include <stdint.h>

struct rtable;
struct rtable_link;

struct rtable *rtable_new(void);
/* Forgets every link still in the table, then frees it. */
void rtable_free(struct rtable *t);

/* ---- links ---- */

/* A gateway worker's link (after AUTH), with no sessions and no channels yet;
 * last in the link order. It becomes the link of (server id, worker id): a link
 * that held those ids before should have been forgotten first (rtable_gateway
 * finds it). NULL when out of memory (the table is unchanged). */
struct rtable_link *rtable_link_add(struct rtable *t, void *owner, uint32_t server_id,
                                    uint32_t worker_id);

/* What forgetting a link dropped. */
struct rtable_forgot {
    size_t sessions; /* sessions the link held */
    size_t channels; /* channels it was subscribed to */
    size_t emptied;  /* ... of which it was the last link */
};
/* Forgets everything the link told us and frees the handle; costs the link's
 * own sessions and channels, not the table's. out may be NULL. */
void rtable_link_forget(struct rtable *t, struct rtable_link *l, struct rtable_forgot *out);

/* Drops the uids and memberships of every session of the link, keeping the
 * sessions: the link is about to report them afresh (a gateway's HELLO). */
void rtable_link_clear(struct rtable *t, struct rtable_link *l);
void *rtable_link_owner(const struct rtable_link *l);
uint32_t rtable_link_server_id(const struct rtable_link *l);
uint32_t rtable_link_worker_id(const struct rtable_link *l);
size_t rtable_link_sessions(const struct rtable_link *l);
size_t rtable_link_channels(const struct rtable_link *l);

/* The owner of the link of (server id, worker id), or NULL. */
void *rtable_gateway(const struct rtable *t, uint32_t server_id, uint32_t worker_id);

/* Links in the order they were added (INFO lists them so):
 *   for (l = rtable_links_first(t); l != NULL; l = next) { next = rtable_links_next(l); ... }
 * Forgetting the current link inside the loop is safe when next was taken first. */
struct rtable_link *rtable_links_first(const struct rtable *t);
struct rtable_link *rtable_links_next(const struct rtable_link *l);

/* ---- sessions ---- */

/* CONN: the link holds these n SIDs now. A SID another link held moves to this
 * one (the client reconnected through another gateway worker before the old
 * one said CLOSE). Returns 0, or -1 out of memory: the SIDs before the one that
 * failed are recorded, the rest are not, and that one may be held by nobody;
 * the table no longer matches the gateway, which should be dropped (forgotten)
 * so that it reconnects and resends its sessions. */
int rtable_sessions_add(struct rtable *t, struct rtable_link *l, const unsigned char *sids,
                        size_t n);
/* CLOSE: forgets those of the n SIDs that this link holds (a SID that moved to
 * another link stays that link's). Returns how many were forgotten. */
size_t rtable_sessions_remove(struct rtable *t, struct rtable_link *l, const unsigned char *sids,
                              size_t n);
/* The owner of the link holding sid, or NULL. */
void *rtable_session_owner(const struct rtable *t, const unsigned char *sid);

/* One link's share of a SID list. */
struct rtable_group {
    void *owner;
    unsigned char *sids; /* its SIDs, in the order they came; points into the split */
    size_t n;            /* how many */
};
/* The result of rtable_split: owned by the caller, zeroed before first use,
 * reused from call to call (its buffers only grow), freed by rtable_split_free.
 * It copies what it reports, so it stays valid if a link is forgotten while the
 * caller walks it. */
struct rtable_split {
    struct rtable_group *groups; /* in the order of each link's first SID */
    size_t ngroups;
    size_t unknown; /* SIDs no link holds (dropped) */
    /* private */
    unsigned char *buf;
    uint32_t *slot;
    size_t cap;
};
/* KICK, SEND_MSG, CH_ADD, CH_DEL: splits n SIDs by the link holding each.
 * A SID given twice is reported twice. 0, or -1 out of memory (*out empty). */
int rtable_split(struct rtable *t, const unsigned char *sids, size_t n, struct rtable_split *out);
void rtable_split_free(struct rtable_split *s);

/* ---- channels ---- */

/* CH_SUB: subscribes the link to the channel. Returns 1 if it was not
 * subscribed, 0 if it was already, -1 out of memory (nothing changed). *nlinks
 * (if not NULL) is the channel's number of links after the call: 1 with a
 * return of 1 means the link is the channel's first. */
int rtable_subscribe(struct rtable *t, struct rtable_link *l, const void *name, size_t len,
                     size_t *nlinks);
/* CH_UNSUB: returns 1 if the link was subscribed (and is no more), else 0.
 * *nlinks as for rtable_subscribe: 0 with a return of 1 means it was the last,
 * and the channel is gone. */
int rtable_unsubscribe(struct rtable *t, struct rtable_link *l, const void *name, size_t len,
                       size_t *nlinks);
/* Links subscribed to the channel (0 for an unknown channel). */
size_t rtable_channel_links(const struct rtable *t, const void *name, size_t len);

/* Calls fn with the owner of every link subscribed to the channel (CH_PUB), in
 * no particular order; fn must not change the table. */
void rtable_channel_each(const struct rtable *t, const void *name, size_t len,
                         void (*fn)(void *owner, void *arg), void *arg);
/* Calls fn with the owner of every link holding at least one session (SEND_ALL),
 * in link order; fn must not change the table. */
void rtable_with_sessions_each(const struct rtable *t, void (*fn)(void *owner, void *arg),
                               void *arg);

/* ---- uids (backend API v2) ---- */

/* Every function below that takes `only` applies to the SIDs that link holds
 * when it is not NULL (a gateway's report: it speaks for its own sessions),
 * to every known SID when it is NULL (a backend's command). SIDs nobody holds
 * are skipped. *applied (if not NULL) says how many SIDs were applied. */

/* BIND: each SID's uid := uid (1..RMSG_MAX_UID bytes), replacing its old one.
 * 0, or -1 out of memory: the SIDs before the one that failed are bound. */
int rtable_bind(struct rtable *t, struct rtable_link *only, const unsigned char *sids, size_t n,
                const void *uid, size_t len, size_t *applied);
/* UNBIND: the SIDs lose their uid. Returns how many had one. */
size_t rtable_unbind(struct rtable *t, struct rtable_link *only, const unsigned char *sids,
                     size_t n);
/* Sessions bound to uid (UID_COUNT). */
size_t rtable_uid_sessions(const struct rtable *t, const void *uid, size_t len);
/* Calls fn for each session bound to uid (UID_SIDS); fn must not change the table. */
void rtable_uid_each(const struct rtable *t, const void *uid, size_t len,
                     void (*fn)(const unsigned char *sid, void *owner, void *arg), void *arg);
/* Calls fn for each link holding sessions of uid, with how many; returns how
 * many links. fn must not change the table. */
size_t rtable_uid_links_each(const struct rtable *t, const void *uid, size_t len,
                             void (*fn)(void *owner, size_t n, void *arg), void *arg);
/* The session's uid (*len set), or NULL: unknown session, or unbound. */
const unsigned char *rtable_session_uid(const struct rtable *t, const unsigned char *sid,
                                        size_t *len);

/* SEND_UID / KICK_UID: a (valid) uid list split by the links holding sessions
 * of its uids: each group's bytes are the list's entries whose uid that link
 * holds, in list order. Owned by the caller like rtable_split (zeroed before
 * first use, its buffers reused, freed by rtable_uid_split_free). */
struct rtable_ugroup {
    void *owner;
    unsigned char *list; /* points into the split's buffer */
    size_t len;
};
struct rtable_uid_split {
    struct rtable_ugroup *groups; /* in the order of each link's first uid */
    size_t ngroups;
    size_t unknown; /* entries whose uid nobody holds */
    /* private */
    unsigned char *buf;
    size_t bufcap, groupcap;
};
/* 0, or -1 out of memory (*out empty). */
int rtable_uid_split(struct rtable *t, const unsigned char *list, size_t len,
                     struct rtable_uid_split *out);
void rtable_uid_split_free(struct rtable_uid_split *s);

/* ---- channel members (backend API v2) ---- */

/* Membership is what CH_ADD / CH_DEL (from backends, and gateways' reports)
 * say of sessions; it is kept apart from the links' subscriptions above, which
 * route CH_PUB. A channel with no member is not kept. */

/* CH_ADD: the SIDs are members of the channel (1..255 bytes). 0, or -1 out of
 * memory (the SIDs before the one that failed are members). */
int rtable_join(struct rtable *t, struct rtable_link *only, const unsigned char *sids, size_t n,
                const void *name, size_t len, size_t *applied);
/* CH_DEL: the SIDs are no longer members. Returns how many were. */
size_t rtable_leave(struct rtable *t, struct rtable_link *only, const unsigned char *sids, size_t n,
                    const void *name, size_t len);
/* Members of the channel (CH_COUNT). */
size_t rtable_members(const struct rtable *t, const void *name, size_t len);
/* Calls fn for each member (CH_MEMBERS, CH_SESSIONS) with its link's owner
 * and uid (NULL, 0: unbound), in no particular order; fn must not change the table. */
void rtable_members_each(const struct rtable *t, const void *name, size_t len,
                         void (*fn)(const unsigned char *sid, void *owner, const unsigned char *uid,
                                    size_t uidlen, void *arg),
                         void *arg);
/* Calls fn for each link holding members of the channel, with how many;
 * returns how many links. fn must not change the table. */
size_t rtable_member_links_each(const struct rtable *t, const void *name, size_t len,
                                void (*fn)(void *owner, size_t n, void *arg), void *arg);
/* Calls fn for each channel with members (CHANNELS), in no particular order;
 * fn must not change the table. */
void rtable_member_channels_each(const struct rtable *t,
                                 void (*fn)(const unsigned char *name, size_t len, size_t members,
                                            void *arg),
                                 void *arg);
/* Channels with at least one member. */
size_t rtable_member_channels(const struct rtable *t);

/* ---- INFO ---- */

struct rtable_totals {
    size_t sessions; /* every session of every link */
    size_t channels; /* channels with at least one link */
    size_t links;
    size_t uids; /* distinct bound uids */
};
void rtable_totals(const struct rtable *t, struct rtable_totals *out);

#endif
