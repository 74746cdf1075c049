/* link.h - what a worker's link to the rest of the cluster looks like to the
 * worker: the router link (uplink.c), the Redis bus (buslink.c), or any other
 * transport. The worker keeps its links on one list and tells each of them when
 * a session becomes routable or goes, and when a channel gets its first local
 * member or loses its last; a link turns that into whatever its far side needs
 * (CONN/CLOSE messages, presence keys, subscriptions), and hands the commands it
 * receives to the worker's executor (command.h) as decoded router messages.
 *
 * Every call comes while the link may be down: a link that cannot send now
 * drops it, and resyncs everything from the worker's state when it is back. */
#ifndef FOOKING_LINK_H
#define FOOKING_LINK_H

#include <stddef.h>

struct client;
struct link;

struct link_ops {
    /* c's session is established: routable by its SID. */
    void (*conn)(struct link *l, struct client *c);
    /* c's session is gone (its channels were left before). */
    void (*close)(struct link *l, struct client *c);
    /* Channel name got its first local member, or lost its last. */
    void (*ch_sub)(struct link *l, const char *name, size_t len);
    void (*ch_unsub)(struct link *l, const char *name, size_t len);
    /* The far side subscribed this link to channel name when it delivered a
     * CH_ADD, and no session here joined after all: take that back. NULL for
     * a link whose far side subscribes nothing on its own (the bus, where the
     * worker subscribes itself on the first join). */
    void (*ch_unwanted)(struct link *l, const char *name, size_t len);
    /* A message back to the far side that asked (GW_ANSWER to a GW_QUERY).
     * NULL where the far side asks nothing. */
    void (*reply)(struct link *l, int type, const void *s, size_t slen, const void *d, size_t dlen);
    /* Tells the far side a change it did not make itself (a session joined,
     * left or was bound by the gateway, a join it asked for was refused), and
     * the sessions' uids and memberships after a reconnect: protocol v2's
     * reports (BIND, UNBIND, CH_ADD, CH_DEL from the gateway). The link drops
     * them while its far side does not speak v2. NULL: no such reports. */
    void (*report)(struct link *l, int type, const void *s, size_t slen, const void *d,
                   size_t dlen);
    /* A session's backend API v2 state changed here: its uid (old is the uid
     * it had, NULL when none; the new one is user_uid(c), NULL once unbound),
     * its session data (user_session(c)), or its membership of channel name
     * (joined 1, left 0; a closing session leaves each of its channels before
     * close is called). For a far side that keeps these itself (the bus's
     * presence keys); NULL where it learns them otherwise (the router keeps
     * its index from the commands it forwards and from the reports). */
    void (*uid)(struct link *l, struct client *c, const void *old, size_t oldlen);
    void (*session)(struct link *l, struct client *c);
    void (*member)(struct link *l, struct client *c, const char *name, size_t len, int joined);
    /* A command from this gateway for the cluster, carried out by the far
     * side as a backend's (a reply's X-Fooking-Publish or Broadcast: CH_PUB_EX
     * or SEND_ALL_EX). 0, or -1 when it cannot be sent now (down, too far
     * behind, a far side that does not speak v2, a message over its limit).
     * NULL: the link carries no commands. */
    int (*publish)(struct link *l, int type, const void *s, size_t slen, const void *d,
                   size_t dlen);
    /* The worker stops cleanly: withdraw what the far side keeps of it now
     * rather than let it expire. NULL when nothing outlives the connection. */
    void (*stop)(struct link *l);
    /* Disconnects and frees the link. */
    void (*free)(struct link *l);
};

/* The first member of each link's own struct, so the link's ops get their
 * struct back with a cast. */
struct link {
    const struct link_ops *ops;
    const char *name;  /* names the sender in the executor's logs: "router host:port" */
    struct link *next; /* the worker's links, in the order they were added */
};

#endif
