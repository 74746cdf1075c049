/* natslink.c - the gateway worker side of the NATS bus (see natslink.h). */
#include "natslink.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "channel.h"
#include "client.h"
#include "command.h"
#include "hmap.h"
#include "link.h"
#include "log.h"
#include "natsq.h"
#include "nbus.h"
#include "rmsg.h"
#include "user.h"
#include "wctx.h"

#define NATSLINK_HB_SECONDS 3
/* Room an answer's header and S take inside the server's max_payload. */
#define NATSLINK_ANSWER_SLACK 64

enum { TAG_CMD, TAG_Q, TAG_WHO };

struct natslink {
    struct link link; /* first: see link.h */
    struct worker *w;
    struct nbus *bus;
    struct nbus_sub *all, *gw, *q, *who;
    struct hmap *chsubs; /* channel name -> struct nbus_sub */
    struct hmap *usubs;  /* uid -> struct nbus_sub */
    struct hmap *unused; /* uids whose last local session may have gone */
    struct event *heartbeat, *sweep;
    int stopped;
    char hb[NBUS_SUBJECT_MAX];
};

static void natslink_heartbeat_now(struct natslink *nl)
{
    char val[96];
    int n = snprintf(val, sizeof(val), "up %d %d %d %zu", nl->w->cfg->server_id, nl->w->id,
                     nl->w->nclients, hmap_count(nl->w->channels));
    if (!nl->stopped && nbus_ready(nl->bus))
        nbus_publish(nl->bus, nl->hb, NULL, val, (size_t)n, NULL, 0);
}

static void natslink_heartbeat_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    natslink_heartbeat_now(arg);
}

static void natslink_up(void *arg)
{
    natslink_heartbeat_now(arg);
}

static struct client *natslink_online(struct worker *w, const unsigned char *sid)
{
    struct client *c = hmap_get(w->by_sid, sid, RMSG_SID_LEN);
    return c && !c->dead && c->session_started ? c : NULL;
}

/* Adds to d what this worker holds for query m; NATSQ_OVER when it passes max. */
static int natslink_part(struct natslink *nl, const struct rmsg *m, size_t max, struct evbuffer *d)
{
    struct worker *w = nl->w;
    unsigned char b[RMSG_CHANNEL_REC_MAX + RMSG_MEMBER_MAX];
    struct client *c;
    size_t len;
    const unsigned char *p;
    uint32_t n = 0;

    switch (m->type) {
    case RMSG_IS_ONLINE:
        for (size_t off = 0; off + RMSG_SID_LEN <= m->slen; off += RMSG_SID_LEN) {
            b[0] = natslink_online(w, m->s + off) != NULL;
            evbuffer_add(d, b, 1);
        }
        break;
    case RMSG_UID_COUNT:
    case RMSG_UID_SIDS: {
        struct uid_group *g = user_group(w, m->s, m->slen);
        struct client_user *u;
        if (g) {
            LIST_FOREACH(u, &g->members, in_group)
            {
                if (u->c->dead || !u->c->session_started)
                    continue;
                n++;
                if (m->type == RMSG_UID_SIDS)
                    evbuffer_add(d, u->c->sid, RMSG_SID_LEN);
            }
        }
        if (m->type == RMSG_UID_COUNT) {
            rmsg_put_u32(b, n);
            evbuffer_add(d, b, 4);
        }
        break;
    }
    case RMSG_SID_UID:
        if ((c = natslink_online(w, m->s)) != NULL && (p = user_uid(c, &len)) != NULL)
            evbuffer_add(d, p, len);
        break;
    case RMSG_SESSION_GET:
        c = natslink_online(w, m->s);
        b[0] = c != NULL;
        evbuffer_add(d, b, 1);
        if (c && (p = user_session(c, &len)) != NULL)
            evbuffer_add(d, p, len);
        break;
    case RMSG_CH_COUNT:
    case RMSG_CH_MEMBERS:
    case RMSG_CH_SESSIONS: {
        struct channel *ch = hmap_get(w->channels, m->s, m->slen);
        struct chan_member *cm;
        if (ch) {
            LIST_FOREACH(cm, &ch->members, in_chan)
            {
                if (cm->c->dead)
                    continue;
                n++;
                if (m->type == RMSG_CH_MEMBERS) {
                    p = user_uid(cm->c, &len);
                    evbuffer_add(
                        d, b,
                        rmsg_encode_member(b, (const unsigned char *)cm->c->sid, p, p ? len : 0));
                } else if (m->type == RMSG_CH_SESSIONS) {
                    p = user_session(cm->c, &len);
                    if (!p)
                        len = 0;
                    evbuffer_add(d, b,
                                 rmsg_encode_record_head(b, (const unsigned char *)cm->c->sid,
                                                         (uint32_t)len));
                    evbuffer_add(d, p, len);
                }
                if (evbuffer_get_length(d) > max)
                    return NATSQ_OVER;
            }
        }
        if (m->type == RMSG_CH_COUNT) {
            rmsg_put_u32(b, n);
            evbuffer_add(d, b, 4);
        }
        break;
    }
    case RMSG_CHANNELS: {
        struct hmap_iter it;
        const void *k;
        size_t klen;
        void *v;
        hmap_iter_init(&it);
        while (hmap_next(w->channels, &it, &k, &klen, &v)) {
            struct channel *ch = v;
            struct chan_member *cm;
            uint32_t live = 0;
            LIST_FOREACH(cm, &ch->members, in_chan)
            live += !cm->c->dead;
            if (live == 0 || klen == 0 || klen > RMSG_MAX_CHANNEL)
                continue;
            evbuffer_add(d, b, rmsg_encode_channel_count(b, k, klen, live));
            if (evbuffer_get_length(d) > max)
                return NATSQ_OVER;
        }
        break;
    }
    case RMSG_INFO: {
        struct hmap_iter it;
        const void *k;
        size_t klen, names = 0;
        struct hmap *maps[2] = {w->channels, w->by_uid};
        rmsg_put_u32(b, (uint32_t)w->nclients);
        rmsg_put_u32(b + 4, (uint32_t)hmap_count(w->channels));
        rmsg_put_u32(b + 8, (uint32_t)hmap_count(w->by_uid));
        for (int i = 0; i < 2; i++) {
            hmap_iter_init(&it);
            while (hmap_next(maps[i], &it, &k, &klen, NULL))
                names += 1 + klen;
        }
        b[12] = names <= NATSQ_INFO_NAMES;
        evbuffer_add(d, b, NATSQ_INFO_HEAD);
        for (int i = 0; b[12] && i < 2; i++) {
            hmap_iter_init(&it);
            while (hmap_next(maps[i], &it, &k, &klen, NULL)) {
                unsigned char l = (unsigned char)klen;
                evbuffer_add(d, &l, 1);
                evbuffer_add(d, k, klen);
            }
        }
        break;
    }
    default:
        return -1;
    }
    return evbuffer_get_length(d) > max ? NATSQ_OVER : NATSQ_OK;
}

/* A router's query: u32 max | message. Answered on its reply subject. */
static void natslink_query(struct natslink *nl, const char *reply, const char *data, size_t len)
{
    struct rmsg m;
    size_t consumed, max;
    int rc;
    if (reply == NULL || len < NATSQ_REQ_HEAD)
        goto bad;
    rc = rmsg_decode(data + NATSQ_REQ_HEAD, len - NATSQ_REQ_HEAD, (uint32_t)len, &m, &consumed);
    if (rc != RMSG_OK || consumed != len - NATSQ_REQ_HEAD || rmsg_validate(&m) != RMSG_OK
        || (!rmsg_is_query(m.type) && m.type != RMSG_INFO))
        goto bad;
    max = rmsg_get_u32((const unsigned char *)data);
    size_t room = nbus_max_payload(nl->bus) - NATSLINK_ANSWER_SLACK;
    if (max > room)
        max = room;
    struct evbuffer *d = evbuffer_new();
    if (d == NULL)
        return; /* the router's deadline answers without this worker */
    int status = natslink_part(nl, &m, max, d);
    if (status < 0) {
        evbuffer_free(d);
        goto bad;
    }
    if (status == NATSQ_OVER)
        evbuffer_drain(d, evbuffer_get_length(d));
    size_t dlen = evbuffer_get_length(d);
    unsigned char hdr[RMSG_HEADER_LEN + NATSQ_ANSWER_S];
    rmsg_encode_header(hdr, (uint16_t)m.type, NATSQ_ANSWER_S, (uint32_t)dlen);
    natsq_answer_s(hdr + RMSG_HEADER_LEN, (unsigned)nl->w->cfg->server_id, (unsigned)nl->w->id,
                   status);
    nbus_publish(nl->bus, reply, NULL, hdr, sizeof(hdr), evbuffer_pullup(d, -1), dlen);
    evbuffer_free(d);
    return;
bad:
    log_err("bus: malformed query on NATS (%zu bytes), ignored", len);
}

static void natslink_message(void *arg, int tag, const char *subject, const char *reply,
                             const char *data, size_t len)
{
    struct natslink *nl = arg;
    struct rmsg m;
    size_t consumed;
    int rc;

    if (tag == TAG_WHO) {
        natslink_heartbeat_now(nl);
        return;
    }
    if (tag == TAG_Q) {
        natslink_query(nl, reply, data, len);
        return;
    }
    rc = rmsg_decode(data, len, (uint32_t)len, &m, &consumed);
    if (rc != RMSG_OK || consumed != len) {
        char name[RMSG_ESCAPE_MAX];
        log_err("bus: malformed message on NATS subject \"%s\" (%zu bytes): %s; ignored",
                rmsg_escape(subject, strlen(subject), name, sizeof(name)), len,
                rc == RMSG_OK ? "trailing bytes" : rmsg_strerror(rc));
        return;
    }
    command_run(nl->w, &nl->link, &m);
    command_flush(nl->w);
}

/* Subscribes to <kind><name> into map, once. */
static void natslink_sub(struct natslink *nl, struct hmap *map, const char *kind, const void *name,
                         size_t len)
{
    char subj[NBUS_SUBJECT_MAX];
    if (nl->stopped || hmap_has(map, name, len))
        return;
    nbus_subject(nl->bus, subj, kind, name, len);
    struct nbus_sub *s = nbus_subscribe(nl->bus, subj, NULL, TAG_CMD);
    if (s && hmap_put(map, name, len, s, NULL) < 0) {
        log_err("bus: out of memory subscribing to %s", subj);
        nbus_unsubscribe(s);
    }
}

static void natslink_unsub(struct natslink *nl, struct hmap *map, const void *name, size_t len)
{
    void *s;
    if (hmap_del(map, name, len, &s))
        nbus_unsubscribe(s);
}

static void natslink_ch_sub(struct link *l, const char *name, size_t len)
{
    struct natslink *nl = (struct natslink *)l;
    natslink_sub(nl, nl->chsubs, "ch.", name, len);
}

static void natslink_ch_unsub(struct link *l, const char *name, size_t len)
{
    struct natslink *nl = (struct natslink *)l;
    natslink_unsub(nl, nl->chsubs, name, len);
}

/* A uid may have lost its last local session: checked by the next sweep, once
 * the sessions that closed are freed. */
static void natslink_maybe_unused(struct natslink *nl, const void *uid, size_t len)
{
    if (!hmap_has(nl->unused, uid, len) && hmap_put(nl->unused, uid, len, (void *)1, NULL) == 0
        && !evtimer_pending(nl->sweep, NULL)) {
        struct timeval tv = {1, 0};
        evtimer_add(nl->sweep, &tv);
    }
}

static void natslink_sweep_cb(evutil_socket_t fd, short what, void *arg)
{
    struct natslink *nl = arg;
    struct hmap_iter it;
    const void *k;
    size_t klen;
    struct hmap *old = nl->unused;
    (void)fd;
    (void)what;
    if ((nl->unused = hmap_new(16)) == NULL) {
        nl->unused = old; /* try again at the next one */
        return;
    }
    hmap_iter_init(&it);
    while (hmap_next(old, &it, &k, &klen, NULL))
        if (user_group(nl->w, k, klen) == NULL)
            natslink_unsub(nl, nl->usubs, k, klen);
    hmap_free(old, NULL);
}

static void natslink_uid(struct link *l, struct client *c, const void *old, size_t oldlen)
{
    struct natslink *nl = (struct natslink *)l;
    size_t len;
    const unsigned char *uid = user_uid(c, &len);
    if (uid)
        natslink_sub(nl, nl->usubs, "u.", uid, len);
    if (old && user_group(nl->w, old, oldlen) == NULL)
        natslink_unsub(nl, nl->usubs, old, oldlen);
}

static void natslink_conn(struct link *l, struct client *c)
{
    (void)l;
    (void)c;
}

static void natslink_close(struct link *l, struct client *c)
{
    struct natslink *nl = (struct natslink *)l;
    size_t len;
    const unsigned char *uid = user_uid(c, &len);
    if (uid)
        natslink_maybe_unused(nl, uid, len);
}

/* A reply's Publish or Broadcast, as a bus router publishes a backend's. */
static int natslink_publish(struct link *l, int type, const void *s, size_t slen, const void *d,
                            size_t dlen)
{
    struct natslink *nl = (struct natslink *)l;
    unsigned char hdr[RMSG_PUBLISH_HEAD_MAX];
    char subj[NBUS_SUBJECT_MAX];
    struct rmsg_ch_ex ex;
    size_t hlen;
    if (nl->stopped || !nbus_ready(nl->bus)
        || (hlen = rmsg_encode_publish_head(hdr, type, s, slen, dlen, &ex)) == 0)
        return -1;
    if (ex.channel)
        nbus_subject(nl->bus, subj, "ch.", ex.channel, ex.chlen);
    else
        nbus_subject(nl->bus, subj, "all", NULL, 0);
    return nbus_publish(nl->bus, subj, NULL, hdr, hlen, d, dlen);
}

static void natslink_stop(struct link *l)
{
    struct natslink *nl = (struct natslink *)l;
    char val[64];
    int n = snprintf(val, sizeof(val), "down %d %d", nl->w->cfg->server_id, nl->w->id);
    event_del(nl->heartbeat);
    if (nbus_ready(nl->bus))
        nbus_publish(nl->bus, nl->hb, NULL, val, (size_t)n, NULL, 0);
    nl->stopped = 1;
}

static void natslink_unsub_all(void *s)
{
    nbus_unsubscribe(s);
}

static void natslink_free(struct link *l)
{
    struct natslink *nl = (struct natslink *)l;
    if (nl->chsubs)
        hmap_free(nl->chsubs, natslink_unsub_all);
    if (nl->usubs)
        hmap_free(nl->usubs, natslink_unsub_all);
    if (nl->unused)
        hmap_free(nl->unused, NULL);
    nbus_unsubscribe(nl->all);
    nbus_unsubscribe(nl->gw);
    nbus_unsubscribe(nl->q);
    nbus_unsubscribe(nl->who);
    if (nl->heartbeat)
        event_free(nl->heartbeat);
    if (nl->sweep)
        event_free(nl->sweep);
    nbus_free(nl->bus);
    free(nl);
}

/* The bus router subscribes no worker (ch_unwanted NULL); the presence is the
 * worker's own state (no member or session hooks). */
static const struct link_ops natslink_ops = {
    .conn = natslink_conn,
    .close = natslink_close,
    .ch_sub = natslink_ch_sub,
    .ch_unsub = natslink_ch_unsub,
    .uid = natslink_uid,
    .publish = natslink_publish,
    .stop = natslink_stop,
    .free = natslink_free,
};

struct link *natslink_new(struct worker *w)
{
    struct natslink *nl = calloc(1, sizeof(*nl));
    char subj[NBUS_SUBJECT_MAX], name[64];
    if (!nl)
        return NULL;
    nl->link.ops = &natslink_ops;
    nl->link.name = "bus";
    nl->w = w;
    snprintf(name, sizeof(name), "fooking gateway %d worker %d", w->cfg->server_id, w->id);
    struct nbus_handlers h = {.arg = nl, .up = natslink_up, .message = natslink_message};
    nl->bus = nbus_new(w->base, w->cfg->bus, w->cfg->bus_prefix, w->cfg->link_timeout, name, &h);
    if (!nl->bus) {
        free(nl);
        return NULL;
    }
    nbus_set_counters(nl->bus, &w->stats->bus);
    nbus_subject(nl->bus, nl->hb, "hb", NULL, 0);
    nl->chsubs = hmap_new(64);
    nl->usubs = hmap_new(64);
    nl->unused = hmap_new(16);
    nl->heartbeat = event_new(w->base, -1, EV_PERSIST, natslink_heartbeat_cb, nl);
    nl->sweep = evtimer_new(w->base, natslink_sweep_cb, nl);
    if (!nl->chsubs || !nl->usubs || !nl->unused || !nl->heartbeat || !nl->sweep)
        goto fail;
    nbus_subject(nl->bus, subj, "all", NULL, 0);
    nl->all = nbus_subscribe(nl->bus, subj, NULL, TAG_CMD);
    snprintf(name, sizeof(name), "gw.%d.%d", w->cfg->server_id, w->id);
    nbus_subject(nl->bus, subj, name, NULL, 0);
    nl->gw = nbus_subscribe(nl->bus, subj, NULL, TAG_CMD);
    nbus_subject(nl->bus, subj, "q", NULL, 0);
    nl->q = nbus_subscribe(nl->bus, subj, NULL, TAG_Q);
    nbus_subject(nl->bus, subj, "who", NULL, 0);
    nl->who = nbus_subscribe(nl->bus, subj, NULL, TAG_WHO);
    if (!nl->all || !nl->gw || !nl->q || !nl->who)
        goto fail;
    struct timeval tv = {NATSLINK_HB_SECONDS, 0};
    event_add(nl->heartbeat, &tv);
    return &nl->link;
fail:
    log_err("bus: cannot subscribe on NATS");
    natslink_free(&nl->link);
    return NULL;
}
