/* channel.c - channel membership of a worker's clients (see channel.h).
 * A membership is one node on two lists, so a client closing leaves all of its
 * channels in O(channels) and a publish walks only the members. */
#include "channel.h"

#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "hmap.h"
#include "log.h"
#include "wctx.h"

int channel_join(struct worker *w, struct client *c, const char *name, size_t len)
{
    struct channel *ch = hmap_get(w->channels, name, len);
    struct chan_member *m;
    int n = 0;
    LIST_FOREACH(m, &c->chans, in_client)
    {
        if (m->ch == ch)
            return 0;
        n++;
    }
    if (n >= w->cfg->channels_per_client)
        return -2; /* the caller logs, once for all the sessions it refused */
    if (!ch) {
        ch = calloc(1, sizeof(*ch));
        if (!ch || !(ch->name = malloc(len + 1))) {
            free(ch);
            log_err("channel join: out of memory");
            return -1;
        }
        memcpy(ch->name, name, len);
        ch->name[len] = '\0';
        ch->len = len;
        LIST_INIT(&ch->members);
        if (hmap_put(w->channels, name, len, ch, NULL) < 0) {
            free(ch->name);
            free(ch);
            return -1;
        }
        worker_channel_used(w, name, len, 1);
    }
    if (!(m = calloc(1, sizeof(*m)))) {
        if (ch->count == 0) {
            hmap_del(w->channels, name, len, NULL);
            worker_channel_used(w, name, len, 0);
            free(ch->name);
            free(ch);
        }
        return -1;
    }
    m->ch = ch;
    m->c = c;
    LIST_INSERT_HEAD(&ch->members, m, in_chan);
    LIST_INSERT_HEAD(&c->chans, m, in_client);
    ch->count++;
    worker_member_changed(w, c, name, len, 1);
    return 1;
}

static void channel_remove_member(struct worker *w, struct chan_member *m)
{
    struct channel *ch = m->ch;
    worker_member_changed(w, m->c, ch->name, ch->len, 0);
    LIST_REMOVE(m, in_chan);
    LIST_REMOVE(m, in_client);
    free(m);
    if (--ch->count == 0) {
        hmap_del(w->channels, ch->name, ch->len, NULL);
        worker_channel_used(w, ch->name, ch->len, 0);
        free(ch->name);
        free(ch);
    }
}

void channel_leave(struct worker *w, struct client *c, const char *name, size_t len)
{
    struct chan_member *m;
    LIST_FOREACH(m, &c->chans, in_client)
    {
        if (m->ch->len == len && memcmp(m->ch->name, name, len) == 0) {
            channel_remove_member(w, m);
            return;
        }
    }
}

int channel_has(struct worker *w, const struct client *c, const char *name, size_t len)
{
    struct channel *ch = hmap_get(w->channels, name, len);
    struct chan_member *m;
    if (!ch)
        return 0;
    /* The shorter list: a client is in few channels, a channel may hold many. */
    LIST_FOREACH(m, &c->chans, in_client)
    {
        if (m->ch == ch)
            return 1;
    }
    return 0;
}

void channel_leave_all(struct worker *w, struct client *c)
{
    struct chan_member *m;
    while ((m = LIST_FIRST(&c->chans)) != NULL)
        channel_remove_member(w, m);
}

int channel_publish(struct worker *w, const char *name, size_t len, struct shared_msg *msg,
                    unsigned except)
{
    struct channel *ch = hmap_get(w->channels, name, len);
    if (!ch)
        return 0;
    int n = 0;
    struct chan_member *m, *next;
    /* A send may close a slow consumer, which removes only that client's
     * membership (and the channel with its last member): taking next first
     * keeps the walk valid either way. */
    for (m = LIST_FIRST(&ch->members); m; m = next) {
        next = LIST_NEXT(m, in_chan);
        if (except && m->c->mark == except)
            continue;
        client_send_shared(m->c, msg);
        n++;
    }
    return n;
}

static void channel_free_one(void *v)
{
    struct channel *ch = v;
    struct chan_member *m;
    while ((m = LIST_FIRST(&ch->members)) != NULL) {
        LIST_REMOVE(m, in_chan);
        LIST_REMOVE(m, in_client);
        free(m);
    }
    free(ch->name);
    free(ch);
}

void channel_free_all(struct worker *w)
{
    hmap_free(w->channels, channel_free_one);
    w->channels = NULL;
}
