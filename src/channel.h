/* channel.h - a worker's named channels and their local members: membership
 * only. A channel's first member and its last are reported to the worker
 * (worker_channel_used), which tells the router or the bus, so a CH_PUB
 * reaches only workers that need it. */
#ifndef FOOKING_CHANNEL_H
#define FOOKING_CHANNEL_H

#include <stddef.h>
#include <sys/queue.h>

struct worker;
struct client;
struct shared_msg;

struct chan_member {
    LIST_ENTRY(chan_member) in_chan;   /* the channel's members */
    LIST_ENTRY(chan_member) in_client; /* the client's channels */
    struct channel *ch;
    struct client *c;
};

struct channel {
    char *name;
    size_t len;
    int count;
    LIST_HEAD(, chan_member) members;
};

/* Both are idempotent: joining twice or leaving a channel one is not in is a
 * no-op. channel_join: 1 joined, 0 was a member, -2 refused (the session is in
 * CHANNELS_PER_CLIENT channels already; not logged), -1 out of memory. */
int channel_join(struct worker *w, struct client *c, const char *name, size_t len);
void channel_leave(struct worker *w, struct client *c, const char *name, size_t len);
/* c is a member of channel name. */
int channel_has(struct worker *w, const struct client *c, const char *name, size_t len);
void channel_leave_all(struct worker *w, struct client *c);
/* Delivers msg to every member but those whose mark is except (0: none);
 * returns how many received it. */
int channel_publish(struct worker *w, const char *name, size_t len, struct shared_msg *msg,
                    unsigned except);
void channel_free_all(struct worker *w);

#endif
