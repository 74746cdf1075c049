/* buslink.c - the gateway worker side of the Redis bus (see buslink.h).
 *
 * After every (re)connect of the command connection the worker rewrites its
 * presence from scratch (DEL, then SADD of what it holds now), which also
 * removes the SIDs a dead predecessor in the same slot left behind. After every
 * reconnect of the subscribe connection it subscribes to everything again.
 *
 * Backend API v2 state (uids, session data, channel members) is kept there too,
 * for the bus routers' queries and SEND_UID/KICK_UID (buslink.h has the keys):
 * each change is written as it happens, and the whole of it again after a
 * reconnect, after a script has taken this slot's old entries out of the
 * shared sets (a session that left while Redis was away, or a dead
 * predecessor's). Every write is fire-and-forget on the command connection,
 * bounded by bus.c's pending limit like the presence writes. */
#include "buslink.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "channel.h"
#include "client.h"
#include "command.h"
#include "hmap.h"
#include "link.h"
#include "log.h"
#include "rmsg.h"
#include "user.h"
#include "wctx.h"

#define BUSLINK_HB_SECONDS 3
#define BUSLINK_HB_TTL     "10"
#define BUSLINK_SADD_BATCH 1000
/* A refill command is sent once it carries this many bytes of values. */
#define BUSLINK_BATCH_BYTES (1024 * 1024)
/* <prefix> (up to 127 bytes), a tag ("chm:"), a channel name or a uid. */
#define BUSLINK_KEY_MAX (128 + 8 + RMSG_MAX_CHANNEL)

struct buslink {
    struct link link; /* first: see link.h */
    struct worker *w;
    struct bus *bus;
    struct event *heartbeat;
    struct event *soon; /* a heartbeat shortly after counts change */
    int stopped;        /* presence withdrawn: write no more of it */
    char gw[64];        /* "gw:<server>:<worker>" */
    char id[32];        /* "<server>:<worker>": its member of <prefix>workers */
    char hb_key[256], sids_key[256], chans_key[256], workers_key[256];
    char sidu_key[256], sess_key[256]; /* hashes SID -> uid, SID -> session data */
};

/* Builds "<prefix><tag><name>" (binary-safe); returns its length. */
static size_t buslink_key(const struct buslink *bl, char out[BUSLINK_KEY_MAX], const char *tag,
                          const void *name, size_t len)
{
    const char *prefix = bus_prefix(bl->bus); /* as the routers see it: at most 127 bytes */
    size_t pl = strlen(prefix), tl = strlen(tag);
    memcpy(out, prefix, pl);
    memcpy(out + pl, tag, tl);
    memcpy(out + pl + tl, name, len);
    return pl + tl + len;
}

static void buslink_cmd(struct buslink *bl, const char *verb, const char *key, size_t klen,
                        const void *a, size_t alen, const void *b, size_t blen)
{
    const char *argv[4] = {verb, key, a, b};
    size_t argvlen[4] = {strlen(verb), klen, alen, blen};
    bus_command_argv(bl->bus, NULL, NULL, b ? 4 : 3, argv, argvlen);
}

/* The v2 hooks write only while presence is being kept and can be sent. */
static int buslink_writing(const struct buslink *bl)
{
    return !bl->stopped && bus_cmd_ready(bl->bus);
}

static void buslink_message(void *arg, const char *ch, size_t clen, const char *data, size_t len)
{
    struct buslink *bl = arg;
    struct rmsg m;
    size_t consumed;
    int rc = rmsg_decode(data, len, (uint32_t)len, &m, &consumed);
    if (rc != RMSG_OK || consumed != len) {
        char name[RMSG_ESCAPE_MAX];
        log_err("bus: malformed message on channel \"%s\" (%zu bytes): %s; ignored",
                rmsg_escape(ch, clen, name, sizeof(name)), len,
                rc == RMSG_OK ? "trailing bytes" : rmsg_strerror(rc));
        return;
    }
    command_run(bl->w, &bl->link, &m);
    command_flush(bl->w); /* one message per callback: nothing to gather */
}

static void buslink_sub_ready(void *arg)
{
    struct buslink *bl = arg;
    bus_subscribe(bl->bus, "all", 3);
    bus_subscribe(bl->bus, bl->gw, strlen(bl->gw));
    struct hmap_iter it;
    const void *key;
    size_t klen;
    char name[RMSG_MAX_CHANNEL + 4];
    hmap_iter_init(&it);
    while (hmap_next(bl->w->channels, &it, &key, &klen, NULL)) {
        if (klen > RMSG_MAX_CHANNEL)
            continue;
        memcpy(name, "ch:", 3);
        memcpy(name + 3, key, klen);
        bus_subscribe(bl->bus, name, klen + 3);
    }
}

static void buslink_cmd2(struct buslink *bl, const char *verb, const char *key, const char *val,
                         size_t vlen)
{
    buslink_cmd(bl, verb, key, strlen(key), val, vlen, NULL, 0);
}

static void buslink_heartbeat_now(struct buslink *bl)
{
    char val[64];
    int n = snprintf(val, sizeof(val), "%d %zu", bl->w->nclients, hmap_count(bl->w->channels));
    const char *argv[5] = {"SET", bl->hb_key, val, "EX", BUSLINK_HB_TTL};
    size_t argvlen[5] = {3, strlen(bl->hb_key), (size_t)n, 2, strlen(BUSLINK_HB_TTL)};
    bus_command_argv(bl->bus, NULL, NULL, 5, argv, argvlen);
}

static void buslink_heartbeat_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct buslink *bl = arg;
    if (bus_cmd_ready(bl->bus))
        buslink_heartbeat_now(bl);
}

/* SADD key m1 m2 ... in batches. */
static void buslink_sadd_flush(struct buslink *bl, const char *key, const char **argv,
                               size_t *argvlen, int *argc)
{
    if (*argc <= 2)
        return;
    bus_command_argv(bl->bus, NULL, NULL, *argc, argv, argvlen);
    *argc = 2;
    argv[0] = "SADD";
    argvlen[0] = 4;
    argv[1] = key;
    argvlen[1] = strlen(key);
}

/* Run first after every (re)connect, with ARGV prefix, "<server>:<worker>":
 * the SIDs of this slot that its old keys name (the uids in sidu:, the members
 * of the channels in chans:) leave the shared sets u:<uid> and chm:<name>,
 * then the slot's own keys go. What the worker holds now is written behind it.
 * Costs the slot's old bound sessions plus the members of its old channels. */
static const char buslink_clean_lua[] = BUS_LUA_WID
    "local p, id = ARGV[1], ARGV[2]\n"
    "local sidu = p .. 'sidu:' .. id\n"
    "local kv = redis.call('HGETALL', sidu)\n"
    "for i = 1, #kv, 2 do redis.call('SREM', p .. 'u:' .. kv[i + 1], kv[i]) end\n"
    "for _, ch in ipairs(redis.call('SMEMBERS', p .. 'chans:' .. id)) do\n"
    "  local k = p .. 'chm:' .. ch\n"
    "  for _, s in ipairs(redis.call('SMEMBERS', k)) do\n"
    "    if wid(s) == id then redis.call('SREM', k, s) end\n"
    "  end\n"
    "end\n"
    "redis.call('DEL', p .. 'sids:' .. id, p .. 'chans:' .. id, sidu, p .. 'sess:' .. id)\n"
    "return 0\n";

/* One refill command (verb key value...) built up and sent in batches. */
struct buslink_batch {
    struct buslink *bl;
    int head, argc;
    size_t bytes;
    const char *argv[BUSLINK_SADD_BATCH + 2];
    size_t argvlen[BUSLINK_SADD_BATCH + 2];
};

static void buslink_batch_start(struct buslink_batch *b, const char *verb, const char *key,
                                size_t klen)
{
    b->argv[0] = verb;
    b->argvlen[0] = strlen(verb);
    b->argv[1] = key;
    b->argvlen[1] = klen;
    b->head = b->argc = 2;
    b->bytes = 0;
}

static void buslink_batch_flush(struct buslink_batch *b)
{
    if (b->argc > b->head)
        bus_command_argv(b->bl->bus, NULL, NULL, b->argc, b->argv, b->argvlen);
    b->argc = b->head;
    b->bytes = 0;
}

/* Adds one value (n = 1) or field and value (n = 2); the bytes must live
 * until the next flush. */
static void buslink_batch_add(struct buslink_batch *b, const void *v1, size_t l1, const void *v2,
                              size_t l2)
{
    int n = v2 ? 2 : 1;
    if (b->argc + n > BUSLINK_SADD_BATCH + 2)
        buslink_batch_flush(b);
    b->argv[b->argc] = v1;
    b->argvlen[b->argc++] = l1;
    if (v2) {
        b->argv[b->argc] = v2;
        b->argvlen[b->argc++] = l2;
    }
    b->bytes += l1 + l2;
    if (b->bytes >= BUSLINK_BATCH_BYTES)
        buslink_batch_flush(b);
}

/* After a reconnect: every bound session's uid (sidu: and u:<uid>), every
 * session's data (sess:), every channel's members (chm:<name>). */
static void buslink_refill_v2(struct buslink *bl)
{
    struct worker *w = bl->w;
    struct buslink_batch *b = malloc(sizeof(*b));
    char key[BUSLINK_KEY_MAX];
    struct hmap_iter it;
    const void *k;
    size_t klen, len;
    void *v;
    struct client *c;

    if (b == NULL) {
        log_err("bus: out of memory rewriting the uids and members; queries will miss them");
        return;
    }
    b->bl = bl;
    buslink_batch_start(b, "HSET", bl->sidu_key, strlen(bl->sidu_key));
    TAILQ_FOREACH(c, &w->clients, entry)
    {
        const unsigned char *uid = c->session_started && !c->dead ? user_uid(c, &len) : NULL;
        if (uid)
            buslink_batch_add(b, c->sid, SID_LEN, uid, len);
    }
    buslink_batch_flush(b);
    buslink_batch_start(b, "HSET", bl->sess_key, strlen(bl->sess_key));
    TAILQ_FOREACH(c, &w->clients, entry)
    {
        const unsigned char *data = c->session_started && !c->dead ? user_session(c, &len) : NULL;
        if (data)
            buslink_batch_add(b, c->sid, SID_LEN, data, len);
    }
    buslink_batch_flush(b);
    hmap_iter_init(&it);
    while (hmap_next(w->by_uid, &it, &k, &klen, &v)) {
        struct uid_group *g = v;
        struct client_user *u;
        buslink_batch_start(b, "SADD", key, buslink_key(bl, key, "u:", k, klen));
        LIST_FOREACH(u, &g->members, in_group)
        {
            if (u->c->session_started && !u->c->dead)
                buslink_batch_add(b, u->c->sid, SID_LEN, NULL, 0);
        }
        buslink_batch_flush(b);
    }
    hmap_iter_init(&it);
    while (hmap_next(w->channels, &it, &k, &klen, &v)) {
        struct channel *ch = v;
        struct chan_member *m;
        if (klen > RMSG_MAX_CHANNEL)
            continue;
        buslink_batch_start(b, "SADD", key, buslink_key(bl, key, "chm:", k, klen));
        LIST_FOREACH(m, &ch->members, in_chan)
        {
            if (!m->c->dead)
                buslink_batch_add(b, m->c->sid, SID_LEN, NULL, 0);
        }
        buslink_batch_flush(b);
    }
    free(b);
}

static void buslink_cmd_ready(void *arg)
{
    struct buslink *bl = arg;
    if (bl->stopped)
        return;
    struct worker *w = bl->w;
    const char *argv[BUSLINK_SADD_BATCH + 2];
    size_t argvlen[BUSLINK_SADD_BATCH + 2];
    int argc = 2;
    /* This slot's old entries out of the shared sets, its own keys emptied. */
    const char *prefix = bus_prefix(bl->bus);
    const char *clean[5] = {"EVAL", buslink_clean_lua, "0", prefix, bl->id};
    size_t cleanlen[5] = {4, sizeof(buslink_clean_lua) - 1, 1, strlen(prefix), strlen(bl->id)};
    bus_command_argv(bl->bus, NULL, NULL, 5, clean, cleanlen);
    /* The registry INFO walks instead of scanning the keyspace. */
    buslink_cmd2(bl, "SADD", bl->workers_key, bl->id, strlen(bl->id));

    argv[0] = "SADD";
    argvlen[0] = 4;
    argv[1] = bl->sids_key;
    argvlen[1] = strlen(bl->sids_key);
    struct client *c;
    TAILQ_FOREACH(c, &w->clients, entry)
    {
        if (!c->session_started || c->dead)
            continue;
        argv[argc] = c->sid;
        argvlen[argc++] = SID_LEN;
        if (argc == BUSLINK_SADD_BATCH + 2)
            buslink_sadd_flush(bl, bl->sids_key, argv, argvlen, &argc);
    }
    buslink_sadd_flush(bl, bl->sids_key, argv, argvlen, &argc);

    argv[1] = bl->chans_key;
    argvlen[1] = strlen(bl->chans_key);
    struct hmap_iter it;
    const void *key;
    size_t klen;
    hmap_iter_init(&it);
    while (hmap_next(w->channels, &it, &key, &klen, NULL)) {
        argv[argc] = key;
        argvlen[argc++] = klen;
        if (argc == BUSLINK_SADD_BATCH + 2)
            buslink_sadd_flush(bl, bl->chans_key, argv, argvlen, &argc);
    }
    buslink_sadd_flush(bl, bl->chans_key, argv, argvlen, &argc);
    buslink_refill_v2(bl);
    buslink_heartbeat_now(bl);
}

static void buslink_stop(struct link *l)
{
    struct buslink *bl = (struct buslink *)l;
    /* A clean stop: say so now rather than let the heartbeat linger 10 s. */
    event_del(bl->heartbeat);
    event_del(bl->soon);
    /* The shared sets lose this slot's entries first (the script reads the
     * keys it then deletes), then the heartbeat goes. */
    const char *prefix = bus_prefix(bl->bus);
    const char *clean[5] = {"EVAL", buslink_clean_lua, "0", prefix, bl->id};
    size_t cleanlen[5] = {4, sizeof(buslink_clean_lua) - 1, 1, strlen(prefix), strlen(bl->id)};
    bus_command_argv(bl->bus, NULL, NULL, 5, clean, cleanlen);
    const char *argv[2] = {"DEL", bl->hb_key};
    size_t argvlen[2] = {3, strlen(bl->hb_key)};
    bus_command_argv(bl->bus, NULL, NULL, 2, argv, argvlen);
    buslink_cmd2(bl, "SREM", bl->workers_key, bl->id, strlen(bl->id));
    bl->stopped = 1;
}

static void buslink_free(struct link *l)
{
    struct buslink *bl = (struct buslink *)l;
    event_free(bl->heartbeat);
    event_free(bl->soon);
    bus_free(bl->bus);
    free(bl);
}

/* Counts changed: publish them within 0.2 s (one SET however many changes). */
static void buslink_changed(struct buslink *bl)
{
    if (!evtimer_pending(bl->soon, NULL)) {
        struct timeval tv = {0, 200000};
        evtimer_add(bl->soon, &tv);
    }
}

static void buslink_conn(struct link *l, struct client *c)
{
    struct buslink *bl = (struct buslink *)l;
    if (!bl->stopped && bus_cmd_ready(bl->bus)) {
        buslink_cmd2(bl, "SADD", bl->sids_key, c->sid, SID_LEN);
        buslink_changed(bl);
    }
}

static void buslink_close(struct link *l, struct client *c)
{
    struct buslink *bl = (struct buslink *)l;
    size_t len;
    if (!buslink_writing(bl))
        return;
    /* Its channels were left before (buslink_member): what is left is its
     * uid and its data. */
    buslink_cmd2(bl, "SREM", bl->sids_key, c->sid, SID_LEN);
    const unsigned char *uid = user_uid(c, &len);
    if (uid) {
        char key[BUSLINK_KEY_MAX];
        buslink_cmd2(bl, "HDEL", bl->sidu_key, c->sid, SID_LEN);
        buslink_cmd(bl, "SREM", key, buslink_key(bl, key, "u:", uid, len), c->sid, SID_LEN, NULL,
                    0);
    }
    if (user_session(c, &len))
        buslink_cmd2(bl, "HDEL", bl->sess_key, c->sid, SID_LEN);
    buslink_changed(bl);
}

/* A new uid: the hash first, then the sets, so that a reader (which takes a
 * set member only if the hash agrees) never drops the new entry as stale. */
static void buslink_uid(struct link *l, struct client *c, const void *old, size_t oldlen)
{
    struct buslink *bl = (struct buslink *)l;
    char key[BUSLINK_KEY_MAX];
    size_t len;
    if (!buslink_writing(bl))
        return;
    const unsigned char *uid = user_uid(c, &len);
    if (uid)
        buslink_cmd(bl, "HSET", bl->sidu_key, strlen(bl->sidu_key), c->sid, SID_LEN, uid, len);
    else
        buslink_cmd2(bl, "HDEL", bl->sidu_key, c->sid, SID_LEN);
    if (old)
        buslink_cmd(bl, "SREM", key, buslink_key(bl, key, "u:", old, oldlen), c->sid, SID_LEN, NULL,
                    0);
    if (uid)
        buslink_cmd(bl, "SADD", key, buslink_key(bl, key, "u:", uid, len), c->sid, SID_LEN, NULL,
                    0);
}

static void buslink_session(struct link *l, struct client *c)
{
    struct buslink *bl = (struct buslink *)l;
    size_t len;
    if (!buslink_writing(bl))
        return;
    const unsigned char *data = user_session(c, &len);
    if (data)
        buslink_cmd(bl, "HSET", bl->sess_key, strlen(bl->sess_key), c->sid, SID_LEN, data, len);
    else
        buslink_cmd2(bl, "HDEL", bl->sess_key, c->sid, SID_LEN);
}

static void buslink_member(struct link *l, struct client *c, const char *name, size_t len,
                           int joined)
{
    struct buslink *bl = (struct buslink *)l;
    char key[BUSLINK_KEY_MAX];
    if (!buslink_writing(bl) || len > RMSG_MAX_CHANNEL)
        return;
    buslink_cmd(bl, joined ? "SADD" : "SREM", key, buslink_key(bl, key, "chm:", name, len), c->sid,
                SID_LEN, NULL, 0);
}

static void buslink_channel(struct link *l, int sub, const char *name, size_t len)
{
    struct buslink *bl = (struct buslink *)l;
    char ch[RMSG_MAX_CHANNEL + 4];
    if (bl->stopped || len > RMSG_MAX_CHANNEL)
        return;
    memcpy(ch, "ch:", 3);
    memcpy(ch + 3, name, len);
    if (sub)
        bus_subscribe(bl->bus, ch, len + 3);
    else
        bus_unsubscribe(bl->bus, ch, len + 3);
    if (bus_cmd_ready(bl->bus)) {
        buslink_cmd2(bl, sub ? "SADD" : "SREM", bl->chans_key, name, len);
        buslink_changed(bl);
    }
}

static void buslink_ch_sub(struct link *l, const char *name, size_t len)
{
    buslink_channel(l, 1, name, len);
}

static void buslink_ch_unsub(struct link *l, const char *name, size_t len)
{
    buslink_channel(l, 0, name, len);
}

/* A reply's Publish or Broadcast: on ch:<name> or all, as a bus router
 * publishes a backend's CH_PUB_EX or SEND_ALL_EX. */
static int buslink_publish(struct link *l, int type, const void *s, size_t slen, const void *d,
                           size_t dlen)
{
    struct buslink *bl = (struct buslink *)l;
    unsigned char hdr[RMSG_PUBLISH_HEAD_MAX];
    char ch[RMSG_MAX_CHANNEL + 4] = "all";
    size_t chlen = 3, hlen;
    struct rmsg_ch_ex ex;
    if (bl->stopped || !bus_cmd_ready(bl->bus)
        || (hlen = rmsg_encode_publish_head(hdr, type, s, slen, dlen, &ex)) == 0)
        return -1;
    if (ex.channel) {
        memcpy(ch, "ch:", 3);
        memcpy(ch + 3, ex.channel, ex.chlen);
        chlen = ex.chlen + 3;
    }
    return bus_publish(bl->bus, ch, chlen, hdr, hlen, d, dlen);
}

/* The bus router subscribes no worker: a CH_ADD nobody took has nothing to
 * give back (ch_unwanted is NULL). */
static const struct link_ops buslink_ops = {
    .conn = buslink_conn,
    .close = buslink_close,
    .ch_sub = buslink_ch_sub,
    .ch_unsub = buslink_ch_unsub,
    .uid = buslink_uid,
    .session = buslink_session,
    .member = buslink_member,
    .publish = buslink_publish,
    .stop = buslink_stop,
    .free = buslink_free,
};

struct link *buslink_new(struct worker *w)
{
    struct buslink *bl = calloc(1, sizeof(*bl));
    if (!bl)
        return NULL;
    bl->link.ops = &buslink_ops;
    bl->link.name = "bus";
    bl->w = w;
    const char *prefix = w->cfg->bus_prefix;
    snprintf(bl->gw, sizeof(bl->gw), "gw:%d:%d", w->cfg->server_id, w->id);
    snprintf(bl->id, sizeof(bl->id), "%d:%d", w->cfg->server_id, w->id);
    snprintf(bl->workers_key, sizeof(bl->workers_key), "%sworkers", prefix);
    snprintf(bl->hb_key, sizeof(bl->hb_key), "%shb:%d:%d", prefix, w->cfg->server_id, w->id);
    snprintf(bl->sids_key, sizeof(bl->sids_key), "%ssids:%d:%d", prefix, w->cfg->server_id, w->id);
    snprintf(bl->chans_key, sizeof(bl->chans_key), "%schans:%d:%d", prefix, w->cfg->server_id,
             w->id);
    snprintf(bl->sidu_key, sizeof(bl->sidu_key), "%ssidu:%d:%d", prefix, w->cfg->server_id, w->id);
    snprintf(bl->sess_key, sizeof(bl->sess_key), "%ssess:%d:%d", prefix, w->cfg->server_id, w->id);
    struct bus_handlers h = {.arg = bl,
                             .sub_ready = buslink_sub_ready,
                             .cmd_ready = buslink_cmd_ready,
                             .message = buslink_message};
    bl->bus = bus_new(w->base, w->cfg->bus, prefix, w->cfg->link_timeout, &h);
    if (!bl->bus) {
        free(bl);
        return NULL;
    }
    bus_set_counters(bl->bus, &w->stats->bus);
    bl->heartbeat = event_new(w->base, -1, EV_PERSIST, buslink_heartbeat_cb, bl);
    bl->soon = evtimer_new(w->base, buslink_heartbeat_cb, bl);
    struct timeval tv = {BUSLINK_HB_SECONDS, 0};
    event_add(bl->heartbeat, &tv);
    return &bl->link;
}
