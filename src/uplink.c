/* uplink.c - the gateway worker side of the router protocol (DESIGN §7).
 *
 * CONN and CLOSE for sessions that come and go within one loop iteration are
 * gathered and sent as one message each (up to 4095 SIDs) when the iteration
 * ends, so a burst of connects costs the router one message, not thousands.
 *
 * Half-open links (LINK_TIMEOUT): a router that supports it PINGs every link
 * every LINK_TIMEOUT / 3 and we answer PONG. Once a router has pinged, silence
 * from it for LINK_TIMEOUT means the link is dead (a stuck proxy, a host gone
 * without a reset): it is dropped and reconnected, and the resync after AUTH
 * restores the router's view. An old router never pings; against it the
 * socket's keepalive and TCP_USER_TIMEOUT are what find a dead peer. */
#include "uplink.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "backoff.h"
#include "client.h"
#include "command.h"
#include "channel.h"
#include "conn.h"
#include "hmap.h"
#include "link.h"
#include "log.h"
#include "netaddr.h"
#include "rmsg.h"
#include "user.h"
#include "wctx.h"

#define UPLINK_BACKOFF_MIN  0.1
#define UPLINK_BACKOFF_MAX  5.0
#define UPLINK_MAX_LEN      (64u << 20) /* largest D accepted from the router */
#define UPLINK_OUTPUT_LIMIT (64u << 20) /* a router this far behind is reconnected */

struct uplink {
    struct link link; /* first: see link.h */
    struct worker *w;
    struct conn *conn;
    struct event *retry;
    struct event *flush; /* sends the gathered CONN/CLOSE at the end of the iteration */
    struct backoff backoff;
    int connected;
    int was_up;       /* connected once: the next connect is a reconnect */
    int pinged;       /* this connection has had a PING */
    int router_pings; /* the router here pings: hold every new connection to LINK_TIMEOUT */
    int v2;           /* this connection's router sent the v2 PING: it takes reports */
    struct evbuffer *conn_sids, *close_sids;
    struct sockaddr_storage sa;
    socklen_t salen;
    char name[128];   /* "host:port" */
    char source[136]; /* "router host:port": link.name, for the executor's log lines */
};

static void uplink_connect(struct uplink *u);

static void uplink_down(struct uplink *u, const char *why);

/* False when the link is down, or has just been dropped because the router
 * stopped reading (its pending output passed the limit; the resync after the
 * reconnect repairs what is lost). */
static int uplink_writable(struct uplink *u)
{
    if (!u->connected || !u->conn)
        return 0;
    if (conn_output_length(u->conn) > UPLINK_OUTPUT_LIMIT) {
        uplink_down(u, "router is not reading (output limit reached)");
        return 0;
    }
    return 1;
}

static void uplink_send(struct uplink *u, int type, const void *s, size_t slen, const void *d,
                        size_t dlen)
{
    unsigned char hdr[RMSG_HEADER_LEN];
    if (!uplink_writable(u))
        return;
    struct evbuffer *out = conn_output(u->conn);
    rmsg_encode_header(hdr, (uint16_t)type, (uint16_t)slen, (uint32_t)dlen);
    evbuffer_add(out, hdr, sizeof(hdr));
    if (slen)
        evbuffer_add(out, s, slen);
    if (dlen)
        evbuffer_add(out, d, dlen);
}

/* Sends a SID list from buf in messages of at most RMSG_MAX_SIDS SIDs. */
static void uplink_send_sids(struct uplink *u, int type, struct evbuffer *buf)
{
    size_t n;
    if (!uplink_writable(u)) {
        evbuffer_drain(buf, evbuffer_get_length(buf));
        return;
    }
    while ((n = evbuffer_get_length(buf)) > 0) {
        size_t chunk = n > RMSG_MAX_SIDS * RMSG_SID_LEN ? RMSG_MAX_SIDS * RMSG_SID_LEN : n;
        unsigned char hdr[RMSG_HEADER_LEN];
        struct evbuffer *out = conn_output(u->conn);
        rmsg_encode_header(hdr, (uint16_t)type, (uint16_t)chunk, 0);
        evbuffer_add(out, hdr, sizeof(hdr));
        evbuffer_remove_buffer(buf, out, chunk);
    }
}

static void uplink_flush_cb(evutil_socket_t fd, short what, void *arg)
{
    struct uplink *u = arg;
    (void)fd;
    (void)what;
    if (!u->connected) {
        evbuffer_drain(u->conn_sids, evbuffer_get_length(u->conn_sids));
        evbuffer_drain(u->close_sids, evbuffer_get_length(u->close_sids));
        return;
    }
    uplink_send_sids(u, RMSG_CONN, u->conn_sids);
    uplink_send_sids(u, RMSG_CLOSE, u->close_sids);
}

static void uplink_gather(struct uplink *u, struct evbuffer *list, struct client *c)
{
    if (!u->connected)
        return;
    evbuffer_add(list, c->sid, SID_LEN);
    event_active(u->flush, EV_TIMEOUT, 0);
}

static void uplink_conn(struct link *l, struct client *c)
{
    struct uplink *u = (struct uplink *)l;
    uplink_gather(u, u->conn_sids, c);
}

static void uplink_close(struct link *l, struct client *c)
{
    struct uplink *u = (struct uplink *)l;
    /* CONNs gathered earlier leave first (flush order), so a session opened and
     * closed in one iteration is announced and then withdrawn. */
    uplink_gather(u, u->close_sids, c);
}

static void uplink_ch_sub(struct link *l, const char *name, size_t len)
{
    uplink_send((struct uplink *)l, RMSG_CH_SUB, name, len, NULL, 0);
}

/* Also what a CH_ADD no session took gives back: the router subscribed this
 * link when it forwarded it. */
static void uplink_ch_unsub(struct link *l, const char *name, size_t len)
{
    uplink_send((struct uplink *)l, RMSG_CH_UNSUB, name, len, NULL, 0);
}

/* After (re)connecting: who we are, then every session and channel we have. */
static void uplink_resync(struct uplink *u)
{
    struct worker *w = u->w;
    const char *secret = w->cfg->router_secret;
    /* config_load refuses a secret over RMSG_MAX_SECRET (CONFIG_MAX_SECRET)
     * bytes, so it is sent whole: a cut secret would only fail as "wrong". */
    size_t slen = secret ? strlen(secret) : 0;
    unsigned char hdr[RMSG_HEADER_LEN], ids[RMSG_AUTH_LEN];
    uint32_t v = htonl((uint32_t)w->cfg->server_id);
    memcpy(ids, &v, 4);
    v = htonl((uint32_t)w->id);
    memcpy(ids + 4, &v, 4);
    if (uplink_writable(u)) {
        struct evbuffer *out = conn_output(u->conn);
        rmsg_encode_header(hdr, RMSG_AUTH, 0, (uint32_t)(RMSG_AUTH_LEN + slen));
        evbuffer_add(out, hdr, sizeof(hdr));
        evbuffer_add(out, ids, sizeof(ids));
        if (slen)
            evbuffer_add(out, secret, slen);
    }

    evbuffer_drain(u->conn_sids, evbuffer_get_length(u->conn_sids));
    evbuffer_drain(u->close_sids, evbuffer_get_length(u->close_sids));
    struct client *c;
    int n = 0;
    TAILQ_FOREACH(c, &w->clients, entry)
    {
        if (c->session_started && !c->dead) {
            evbuffer_add(u->conn_sids, c->sid, SID_LEN);
            n++;
        }
    }
    uplink_send_sids(u, RMSG_CONN, u->conn_sids);
    struct hmap_iter it;
    const void *key;
    size_t klen;
    int nch = 0;
    hmap_iter_init(&it);
    while (hmap_next(w->channels, &it, &key, &klen, NULL)) {
        uplink_send(u, RMSG_CH_SUB, key, klen, NULL, 0);
        nch++;
    }
    log_info("router %s: connected, announced %d sessions and %d channels", u->name, n, nch);
}

static void uplink_down(struct uplink *u, const char *why)
{
    if (u->connected)
        log_err("router %s: link lost: %s; reconnecting", u->name, why);
    else
        log_debug("router %s: %s", u->name, why);
    if (u->connected)
        gauge_set(&u->w->stats->router_link, 0);
    u->connected = 0;
    if (u->conn) {
        conn_free(u->conn);
        u->conn = NULL;
    }
    struct timeval tv = backoff_timeval(backoff_next(&u->backoff));
    evtimer_add(u->retry, &tv);
}

/* type with S = the SIDs in sids (n of them, in messages of at most 4095) and D. */
static void uplink_send_sid_list(struct uplink *u, int type, struct evbuffer *sids, const void *d,
                                 size_t dlen)
{
    size_t n;
    while ((n = evbuffer_get_length(sids)) > 0 && uplink_writable(u)) {
        size_t chunk = n > RMSG_MAX_SIDS * RMSG_SID_LEN ? RMSG_MAX_SIDS * RMSG_SID_LEN : n;
        unsigned char hdr[RMSG_HEADER_LEN];
        struct evbuffer *out = conn_output(u->conn);
        rmsg_encode_header(hdr, (uint16_t)type, (uint16_t)chunk, (uint32_t)dlen);
        evbuffer_add(out, hdr, sizeof(hdr));
        evbuffer_remove_buffer(sids, out, chunk);
        if (dlen)
            evbuffer_add(out, d, dlen);
    }
    evbuffer_drain(sids, evbuffer_get_length(sids));
}

/* A v2 router keeps each session's uid and channels: after AUTH it has the
 * sessions (CONN) and channels (CH_SUB); this gives it the rest, one BIND per
 * uid and one CH_ADD per channel. */
static void uplink_resync_v2(struct uplink *u)
{
    struct worker *w = u->w;
    struct evbuffer *sids = evbuffer_new();
    struct hmap_iter it;
    void *v;
    size_t nuid = 0, nmem = 0;
    if (!sids)
        return;
    hmap_iter_init(&it);
    while (hmap_next(w->by_uid, &it, NULL, NULL, &v)) {
        struct uid_group *g = v;
        struct client_user *cu;
        LIST_FOREACH(cu, &g->members, in_group)
        evbuffer_add(sids, cu->c->sid, SID_LEN);
        uplink_send_sid_list(u, RMSG_BIND, sids, g->uid, g->len);
        nuid++;
    }
    hmap_iter_init(&it);
    while (hmap_next(w->channels, &it, NULL, NULL, &v)) {
        struct channel *ch = v;
        struct chan_member *m;
        LIST_FOREACH(m, &ch->members, in_chan)
        {
            evbuffer_add(sids, m->c->sid, SID_LEN);
            nmem++;
        }
        uplink_send_sid_list(u, RMSG_CH_ADD, sids, ch->name, ch->len);
    }
    evbuffer_free(sids);
    log_info("router %s: speaks v2: announced %zu uids and %zu channel memberships", u->name, nuid,
             nmem);
}

/* CONN and CLOSE gathered so far go now: a report or a command about a
 * session must reach the router after the session's CONN (a reply's join in
 * the same loop turn as the accept). */
static void uplink_flush_now(struct uplink *u)
{
    if (evbuffer_get_length(u->conn_sids) > 0 || evbuffer_get_length(u->close_sids) > 0)
        uplink_flush_cb(-1, 0, u);
}

static void uplink_report(struct link *l, int type, const void *s, size_t slen, const void *d,
                          size_t dlen)
{
    struct uplink *u = (struct uplink *)l;
    if (u->v2) {
        uplink_flush_now(u);
        uplink_send(u, type, s, slen, d, dlen);
    }
}

static void uplink_reply(struct link *l, int type, const void *s, size_t slen, const void *d,
                         size_t dlen)
{
    uplink_send((struct uplink *)l, type, s, slen, d, dlen);
}

/* PING from the router: answer it with the same token, and from the first one
 * on treat silence for LINK_TIMEOUT as a dead link. The v2 token says the
 * router keeps uids and memberships: it gets them now, and reports later. */
static void uplink_pong(struct uplink *u, const struct rmsg *m)
{
    int t = u->w->cfg->link_timeout;

    if (!u->v2 && m->len == sizeof(RMSG_V2_TOKEN) - 1 && memcmp(m->d, RMSG_V2_TOKEN, m->len) == 0) {
        unsigned char v[4];
        rmsg_put_u32(v, RMSG_VERSION);
        u->v2 = 1;
        /* HELLO before the PONG and before any report: the router knows
         * which links speak v2 by the time their PONG comes. */
        uplink_send(u, RMSG_HELLO, NULL, 0, v, sizeof(v));
        uplink_resync_v2(u);
    }
    uplink_send(u, RMSG_PONG, NULL, 0, m->d, m->len);
    if (u->pinged || !u->conn)
        return;
    u->pinged = 1;
    u->router_pings = 1;
    if (t > 0) {
        struct timeval tv = {t, 0};
        conn_set_timeouts(u->conn, &tv, NULL);
        log_info("router %s: pings this link; silence for %d s (LINK_TIMEOUT) will drop it",
                 u->name, t);
    }
}

static void uplink_read(struct uplink *u, struct conn *conn);

static void uplink_readcb(struct conn *conn, void *arg)
{
    struct uplink *u = arg;
    struct worker *w = u->w;
    uplink_read(u, conn);
    command_flush(w); /* u may be gone */
}

static void uplink_read(struct uplink *u, struct conn *conn)
{
    struct evbuffer *in = conn_input(conn);
    for (;;) {
        unsigned char hdr[RMSG_HEADER_LEN];
        struct rmsg m;
        size_t n = evbuffer_get_length(in);
        if (evbuffer_copyout(in, hdr, sizeof(hdr)) < (ev_ssize_t)sizeof(hdr))
            return;
        int rc = rmsg_decode_header(hdr, sizeof(hdr), UPLINK_MAX_LEN, &m);
        if (rc < 0) {
            log_err("router %s: malformed message: %s", u->name, rmsg_strerror(rc));
            uplink_down(u, "malformed message");
            return;
        }
        size_t size = rmsg_size(&m);
        if (n < size)
            return;
        size_t consumed = 0;
        const unsigned char *p = evbuffer_pullup(in, (ev_ssize_t)size);
        rc = rmsg_decode(p, size, UPLINK_MAX_LEN, &m, &consumed);
        if (rc != RMSG_OK && consumed == 0) { /* the stream itself is broken */
            uplink_down(u, rmsg_strerror(rc));
            return;
        }
        if (rc != RMSG_OK) {
            /* Whole, and only this message is bad (a newer router's type, a
             * v2 message out of shape): skipped, the link goes on. */
            if (rc == RMSG_UNKNOWN)
                log_info("router %s: message of unknown type %u skipped", u->name, m.type);
            else
                log_err("router %s: %s refused: %s", u->name, rmsg_type_name(m.type),
                        rmsg_strerror(rc));
        } else if (m.type == RMSG_PING)
            uplink_pong(u, &m);
        else if (m.type != RMSG_PONG)
            command_run(u->w, &u->link, &m);
        if (!u->conn)
            return;
        evbuffer_drain(in, consumed);
    }
}

static void uplink_eventcb(struct conn *conn, short what, void *arg)
{
    struct uplink *u = arg;
    (void)conn;
    int t = u->w->cfg->link_timeout;
    char why[160];
    if (what & CONN_CONNECTED) {
        struct timeval tv = {t, 0};
        u->connected = 1;
        gauge_set(&u->w->stats->router_link, 1);
        if (u->was_up)
            counter_add(&u->w->stats->router_reconnects, 1);
        u->was_up = 1;
        u->pinged = 0;
        u->v2 = 0;
        backoff_reset(&u->backoff);
        /* The router that pinged the last link is expected to ping this one:
         * a connection that a stuck proxy accepted must not hang forever. */
        conn_set_timeouts(u->conn, t > 0 && u->router_pings ? &tv : NULL, NULL);
        uplink_resync(u);
        return;
    }
    if ((what & CONN_TIMEOUT) && (what & CONN_READING)) {
        snprintf(why, sizeof(why),
                 "nothing from the router for %d s (LINK_TIMEOUT) though it sends PING: the "
                 "link is dead",
                 t);
        /* No PING at all on this connection: perhaps the router is an old one
         * now; do not hold the next connection to PINGs it may never send. */
        if (!u->pinged)
            u->router_pings = 0;
        uplink_down(u, why);
    } else if (what & CONN_TIMEOUT) {
        snprintf(why, sizeof(why), "connect not finished within %d s (LINK_TIMEOUT)", t);
        uplink_down(u, why);
    } else if (what & CONN_EOF)
        uplink_down(u, "closed by the router");
    else
        uplink_down(u, evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

/* For routers that never PING: keepalive probes after LINK_TIMEOUT / 3 of
 * silence, and TCP_USER_TIMEOUT so data unacknowledged for LINK_TIMEOUT (or
 * unanswered probes) reset the connection. Best effort: a failure only loses
 * the early warning, so it is not fatal. */
static void uplink_socket_options(evutil_socket_t fd, int t)
{
    int one = 1, idle = t / 3 > 0 ? t / 3 : 1, cnt = 3;
    unsigned int ms = (unsigned int)t * 1000u;

    if (fd < 0 || t <= 0)
        return;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &idle, sizeof(idle));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof(ms));
}

static void uplink_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    uplink_connect(arg);
}

static void uplink_connect(struct uplink *u)
{
    u->conn = conn_new(u->w->base, -1, NULL);
    if (!u->conn) {
        uplink_down(u, "out of memory");
        return;
    }
    conn_setcb(u->conn, uplink_readcb, NULL, uplink_eventcb, u);
    conn_read(u->conn, 1); /* from the moment it is connected */
    int t = u->w->cfg->link_timeout;
    if (t > 0) {
        struct timeval tv = {t, 0};
        conn_set_timeouts(u->conn, NULL, &tv); /* bounds the connect */
    }
    if (conn_connect(u->conn, (struct sockaddr *)&u->sa, u->salen) < 0) {
        uplink_down(u, evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        return;
    }
    uplink_socket_options(conn_fd(u->conn), t);
}

static void uplink_free(struct link *l)
{
    struct uplink *u = (struct uplink *)l;
    conn_free(u->conn);
    event_free(u->retry);
    event_free(u->flush);
    evbuffer_free(u->conn_sids);
    evbuffer_free(u->close_sids);
    free(u);
}

/* A reply's Publish or Broadcast: to the router, as a backend's command. */
static int uplink_publish(struct link *l, int type, const void *s, size_t slen, const void *d,
                          size_t dlen)
{
    struct uplink *u = (struct uplink *)l;
    if (!uplink_writable(u) || (type >= RMSG_BIND && !u->v2) || dlen > UPLINK_MAX_LEN)
        return -1;
    uplink_flush_now(u);
    uplink_send(u, type, s, slen, d, dlen);
    return 0;
}

/* Nothing of a worker outlives its router connection (the router drops a
 * link's sessions and channels when it closes), so there is no stop. */
static const struct link_ops uplink_ops = {
    .conn = uplink_conn,
    .close = uplink_close,
    .ch_sub = uplink_ch_sub,
    .ch_unsub = uplink_ch_unsub,
    .ch_unwanted = uplink_ch_unsub,
    .reply = uplink_reply,
    .report = uplink_report,
    .publish = uplink_publish,
    .free = uplink_free,
};

struct link *uplink_new(struct worker *w)
{
    const struct config *cfg = w->cfg;
    struct uplink *u = calloc(1, sizeof(*u));
    if (!u)
        return NULL;
    u->link.ops = &uplink_ops;
    u->link.name = u->source;
    u->w = w;
    backoff_init(&u->backoff, UPLINK_BACKOFF_MIN, UPLINK_BACKOFF_MAX);
    snprintf(u->name, sizeof(u->name), "%s:%d", cfg->router_host, cfg->router_port);
    snprintf(u->source, sizeof(u->source), "router %s", u->name);
    char port[16];
    snprintf(port, sizeof(port), "%d", cfg->router_port);
    if (netaddr_resolve(cfg->router_host, port, &u->sa, &u->salen) != 0) {
        log_err("ROUTER_HOST %s: cannot resolve", cfg->router_host);
        free(u);
        return NULL;
    }
    u->conn_sids = evbuffer_new();
    u->close_sids = evbuffer_new();
    u->retry = evtimer_new(w->base, uplink_retry_cb, u);
    u->flush = event_new(w->base, -1, 0, uplink_flush_cb, u);
    uplink_connect(u);
    return &u->link;
}
