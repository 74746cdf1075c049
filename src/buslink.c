/* buslink.c - the gateway worker side of the Redis bus (see buslink.h).
 *
 * After every (re)connect of the command connection the worker rewrites its
 * presence from scratch (DEL, then SADD of what it holds now), which also
 * removes the SIDs a dead predecessor in the same slot left behind. After every
 * reconnect of the subscribe connection it subscribes to everything again. */
#include "buslink.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "client.h"
#include "command.h"
#include "hmap.h"
#include "link.h"
#include "log.h"
#include "rmsg.h"
#include "worker.h"

#define BUSLINK_HB_SECONDS 3
#define BUSLINK_HB_TTL     "10"
#define BUSLINK_SADD_BATCH 1000

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
};

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
    const char *argv[3] = {verb, key, val};
    size_t argvlen[3] = {strlen(verb), strlen(key), vlen};
    bus_command_argv(bl->bus, NULL, NULL, 3, argv, argvlen);
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

static void buslink_cmd_ready(void *arg)
{
    struct buslink *bl = arg;
    if (bl->stopped)
        return;
    struct worker *w = bl->w;
    const char *argv[BUSLINK_SADD_BATCH + 2];
    size_t argvlen[BUSLINK_SADD_BATCH + 2];
    int argc = 2;
    const char *del[3] = {"DEL", bl->sids_key, bl->chans_key};
    size_t dellen[3] = {3, strlen(bl->sids_key), strlen(bl->chans_key)};
    bus_command_argv(bl->bus, NULL, NULL, 3, del, dellen);
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
    buslink_heartbeat_now(bl);
}

static void buslink_stop(struct link *l)
{
    struct buslink *bl = (struct buslink *)l;
    /* A clean stop: say so now rather than let the heartbeat linger 10 s. */
    event_del(bl->heartbeat);
    event_del(bl->soon);
    const char *argv[4] = {"DEL", bl->hb_key, bl->sids_key, bl->chans_key};
    size_t argvlen[4] = {3, strlen(bl->hb_key), strlen(bl->sids_key), strlen(bl->chans_key)};
    bus_command_argv(bl->bus, NULL, NULL, 4, argv, argvlen);
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
    if (!bl->stopped && bus_cmd_ready(bl->bus)) {
        buslink_cmd2(bl, "SREM", bl->sids_key, c->sid, SID_LEN);
        buslink_changed(bl);
    }
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

/* The bus router subscribes no worker: a CH_ADD nobody took has nothing to
 * give back (ch_unwanted is NULL). */
static const struct link_ops buslink_ops = {
    .conn = buslink_conn,
    .close = buslink_close,
    .ch_sub = buslink_ch_sub,
    .ch_unsub = buslink_ch_unsub,
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
    struct bus_handlers h = {.arg = bl,
                             .sub_ready = buslink_sub_ready,
                             .cmd_ready = buslink_cmd_ready,
                             .message = buslink_message};
    bl->bus = bus_new(w->base, w->cfg->bus, prefix, w->cfg->link_timeout, &h);
    if (!bl->bus) {
        free(bl);
        return NULL;
    }
    bl->heartbeat = event_new(w->base, -1, EV_PERSIST, buslink_heartbeat_cb, bl);
    bl->soon = evtimer_new(w->base, buslink_heartbeat_cb, bl);
    struct timeval tv = {BUSLINK_HB_SECONDS, 0};
    event_add(bl->heartbeat, &tv);
    return &bl->link;
}
