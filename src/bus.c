/* bus.c - Redis connections for the message bus (see bus.h).
 *
 * Half-open connections (LINK_TIMEOUT): TCP keepalive is on, but it cannot see
 * a stuck proxy that still ACKs, so each connection is also pinged every
 * LINK_TIMEOUT / 3 and dropped when a ping has had no answer for LINK_TIMEOUT.
 * The command connection sends PING. The subscribe connection sends SUBSCRIBE
 * <prefix>ping again instead: hiredis 0.14 never hands a PING reply in
 * subscribe mode to its callback (and keeps the callback forever), while a
 * repeated SUBSCRIBE is answered by Redis every time, on every version. */
#include "bus.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/adapters/libevent.h>
#include <hiredis/hiredis.h>

#include "backoff.h"
#include "log.h"

#define BUS_BACKOFF_MIN 0.1
#define BUS_BACKOFF_MAX 5.0
/* Replies we wait for on the command connection before dropping new commands:
 * a Redis that stalls must not make the worker's memory grow. */
#define BUS_MAX_PENDING 100000

struct bus_conn {
    struct bus *bus;
    redisAsyncContext *ac;
    int ready;
    int was_up; /* connected once: the next connect is a reconnect */
    int is_sub;
    struct backoff backoff;
    struct event *retry;
    long pending;
    struct event *ping;     /* every LINK_TIMEOUT / 3 while ready */
    struct event *deadline; /* LINK_TIMEOUT after an unanswered ping */
    int ping_out;           /* a ping is waiting for its answer */
    int timed_out;          /* dropped by the deadline: already logged */
};

struct bus {
    struct event_base *base;
    char host[256];
    int port, db;
    char password[256];
    char prefix[128];
    size_t prefix_len;
    struct bus_handlers h;
    struct bus_conn sub, cmd;
    unsigned long dropped;
    struct bus_counters *ctr; /* the owner's (bus_set_counters), or own */
    struct bus_counters own;
    int closing;
    int link_timeout; /* seconds; 0: no pings */
};

static void bus_connect(struct bus_conn *bc);

static int bus_hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

int bus_parse_url(const char *url, char *host, size_t hostlen, int *port, char *password,
                  size_t pwlen, int *db, char *err, size_t errlen)
{
    const char *p = url;
    *port = 6379;
    *db = 0;
    password[0] = '\0';
    if (strncmp(p, "redis://", 8) != 0) {
        snprintf(err, errlen, "must start with redis://");
        return -1;
    }
    p += 8;
    const char *at = strchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *pw = colon ? colon + 1 : p;
        size_t n = 0;
        /* Percent-decoded, as URLs carry a password with ':', '@' or '/' in
         * it (and as the PHP and Go clients read the same URL). */
        for (const char *q = pw; q < at; q++) {
            int c = (unsigned char)*q;
            if (c == '%') {
                int hi, lo;
                if (at - q < 3 || (hi = bus_hexval(q[1])) < 0 || (lo = bus_hexval(q[2])) < 0) {
                    snprintf(err, errlen, "bad %%-escape in the password");
                    return -1;
                }
                c = hi * 16 + lo;
                q += 2;
            }
            if (n + 1 >= pwlen) {
                snprintf(err, errlen, "password too long");
                return -1;
            }
            password[n++] = (char)c;
        }
        password[n] = '\0';
        p = at + 1;
    }
    const char *end = p + strcspn(p, ":/");
    size_t hl = (size_t)(end - p);
    if (hl == 0 || hl >= hostlen) {
        snprintf(err, errlen, "needs a host");
        return -1;
    }
    memcpy(host, p, hl);
    host[hl] = '\0';
    p = end;
    if (*p == ':') {
        char *e;
        long v = strtol(p + 1, &e, 10);
        if (e == p + 1 || v < 1 || v > 65535) {
            snprintf(err, errlen, "port must be 1 to 65535");
            return -1;
        }
        *port = (int)v;
        p = e;
    }
    if (*p == '/') {
        char *e;
        long v = strtol(p + 1, &e, 10);
        if (p[1] != '\0' && (e == p + 1 || *e != '\0' || v < 0 || v > 1000)) {
            snprintf(err, errlen, "database must be a number");
            return -1;
        }
        *db = (int)v;
        p = p + strlen(p);
    }
    if (*p != '\0') {
        snprintf(err, errlen, "unexpected \"%s\"", p);
        return -1;
    }
    return 0;
}

static const char *bus_name(const struct bus_conn *bc)
{
    return bc->is_sub ? "subscribe" : "command";
}

static void bus_schedule(struct bus_conn *bc)
{
    struct bus *b = bc->bus;
    bc->ac = NULL;
    if (bc->ready)
        gauge_set(&b->ctr->connected[!bc->is_sub], 0);
    bc->ready = 0;
    bc->pending = 0;
    bc->ping_out = 0;
    event_del(bc->ping);
    event_del(bc->deadline);
    if (b->closing)
        return;
    struct timeval tv = backoff_timeval(backoff_next(&bc->backoff));
    evtimer_add(bc->retry, &tv);
}

static void bus_auth_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply *reply = r;
    struct bus_conn *bc = privdata;
    (void)ac;
    if (reply && reply->type == REDIS_REPLY_ERROR)
        log_err("bus %s:%d: %s connection: AUTH/SELECT failed: %s", bc->bus->host, bc->bus->port,
                bus_name(bc), reply->str);
}

static void bus_connect_cb(const redisAsyncContext *ac, int status)
{
    struct bus_conn *bc = ac->data;
    struct bus *b = bc->bus;
    if (status != REDIS_OK) {
        log_debug("bus %s:%d: %s connection: %s", b->host, b->port, bus_name(bc), ac->errstr);
        bus_schedule(bc); /* hiredis frees the context */
        return;
    }
    redisAsyncContext *mac = (redisAsyncContext *)ac;
    redisEnableKeepAlive(&mac->c);
    bc->timed_out = 0;
    if (b->link_timeout > 0) {
        long ms = b->link_timeout * 1000L / 3;
        struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
        event_add(bc->ping, &tv);
    }
    if (b->password[0])
        redisAsyncCommand(mac, bus_auth_cb, bc, "AUTH %s", b->password);
    if (!bc->is_sub && b->db)
        redisAsyncCommand(mac, bus_auth_cb, bc, "SELECT %d", b->db);
    bc->ready = 1;
    gauge_set(&b->ctr->connected[!bc->is_sub], 1);
    if (bc->was_up)
        counter_add(&b->ctr->reconnects, 1);
    bc->was_up = 1;
    backoff_reset(&bc->backoff);
    log_info("bus %s:%d: %s connection up", b->host, b->port, bus_name(bc));
    if (bc->is_sub && b->h.sub_ready)
        b->h.sub_ready(b->h.arg);
    if (!bc->is_sub && b->h.cmd_ready)
        b->h.cmd_ready(b->h.arg);
}

static void bus_disconnect_cb(const redisAsyncContext *ac, int status)
{
    struct bus_conn *bc = ac->data;
    struct bus *b = bc->bus;
    (void)status;
    if (!b->closing && !bc->timed_out)
        log_err("bus %s:%d: %s connection lost: %s; reconnecting", b->host, b->port, bus_name(bc),
                ac->errstr[0] ? ac->errstr : "closed");
    bus_schedule(bc);
}

/* Any answer to the ping: PONG, or the subscribe confirmation. NULL is the
 * context being freed. */
static void bus_pong_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct bus_conn *bc = privdata;
    (void)ac;
    if (reply == NULL || bc->ac == NULL)
        return;
    bc->ping_out = 0;
    event_del(bc->deadline);
}

static void bus_ping_cb(evutil_socket_t fd, short what, void *arg)
{
    struct bus_conn *bc = arg;
    struct bus *b = bc->bus;
    struct timeval tv = {b->link_timeout, 0};
    int rc;
    (void)fd;
    (void)what;
    if (!bc->ready || bc->ac == NULL || bc->ping_out)
        return; /* the deadline of the ping still out decides */
    if (bc->is_sub) {
        char ch[sizeof(b->prefix) + 4];
        int n = snprintf(ch, sizeof(ch), "%sping", b->prefix);
        rc = redisAsyncCommand(bc->ac, bus_pong_cb, bc, "SUBSCRIBE %b", ch, (size_t)n);
    } else {
        rc = redisAsyncCommand(bc->ac, bus_pong_cb, bc, "PING");
    }
    if (rc != REDIS_OK)
        return;
    bc->ping_out = 1;
    evtimer_add(bc->deadline, &tv);
}

/* No answer within LINK_TIMEOUT: the connection is as good as gone, whatever
 * TCP thinks. Freeing the context answers its pending callbacks with NULL and
 * calls bus_disconnect_cb, which schedules the reconnect (then resubscribe and
 * presence rewrite, as after any reconnect). */
static void bus_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct bus_conn *bc = arg;
    struct bus *b = bc->bus;
    redisAsyncContext *ac = bc->ac;
    (void)fd;
    (void)what;
    if (ac == NULL)
        return;
    log_err("bus %s:%d: %s connection: no answer to a ping for %d s (LINK_TIMEOUT): the link is "
            "dead; reconnecting",
            b->host, b->port, bus_name(bc), b->link_timeout);
    bc->timed_out = 1;
    redisAsyncFree(ac);
    if (bc->ac == ac) /* not connected as far as hiredis knew: no disconnect callback */
        bus_schedule(bc);
}

static void bus_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    bus_connect(arg);
}

static void bus_connect(struct bus_conn *bc)
{
    struct bus *b = bc->bus;
    redisAsyncContext *ac = redisAsyncConnect(b->host, b->port);
    if (ac == NULL || ac->err) {
        log_err("bus %s:%d: %s connection: %s", b->host, b->port, bus_name(bc),
                ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        bus_schedule(bc);
        return;
    }
    ac->data = bc;
    bc->ac = ac;
    redisLibeventAttach(ac, b->base);
    redisAsyncSetConnectCallback(ac, bus_connect_cb);
    redisAsyncSetDisconnectCallback(ac, bus_disconnect_cb);
}

struct bus *bus_new(struct event_base *base, const char *url, const char *prefix, int link_timeout,
                    const struct bus_handlers *h)
{
    char err[128];
    struct bus *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    b->ctr = &b->own;
    if (bus_parse_url(url, b->host, sizeof(b->host), &b->port, b->password, sizeof(b->password),
                      &b->db, err, sizeof(err))
        < 0) {
        log_err("BUS %s: %s", url, err);
        free(b);
        return NULL;
    }
    b->base = base;
    b->h = *h;
    b->link_timeout = link_timeout;
    snprintf(b->prefix, sizeof(b->prefix), "%s", prefix ? prefix : "fooking:");
    b->prefix_len = strlen(b->prefix);
    struct bus_conn *conns[2] = {&b->sub, &b->cmd};
    for (int i = 0; i < 2; i++) {
        conns[i]->bus = b;
        conns[i]->is_sub = i == 0;
        backoff_init(&conns[i]->backoff, BUS_BACKOFF_MIN, BUS_BACKOFF_MAX);
        conns[i]->retry = evtimer_new(base, bus_retry_cb, conns[i]);
        conns[i]->ping = event_new(base, -1, EV_PERSIST, bus_ping_cb, conns[i]);
        conns[i]->deadline = evtimer_new(base, bus_deadline_cb, conns[i]);
        if (conns[i]->retry == NULL || conns[i]->ping == NULL || conns[i]->deadline == NULL) {
            log_err("BUS %s: out of memory", url);
            for (int j = 0; j <= i; j++) {
                if (conns[j]->retry)
                    event_free(conns[j]->retry);
                if (conns[j]->ping)
                    event_free(conns[j]->ping);
                if (conns[j]->deadline)
                    event_free(conns[j]->deadline);
            }
            free(b);
            return NULL;
        }
    }
    bus_connect(&b->sub);
    bus_connect(&b->cmd);
    return b;
}

void bus_free(struct bus *b)
{
    if (!b)
        return;
    b->closing = 1;
    struct bus_conn *conns[2] = {&b->sub, &b->cmd};
    for (int i = 0; i < 2; i++) {
        if (conns[i]->ac)
            redisAsyncFree(conns[i]->ac);
        event_free(conns[i]->retry);
        event_free(conns[i]->ping);
        event_free(conns[i]->deadline);
    }
    free(b);
}

const char *bus_prefix(const struct bus *b)
{
    return b->prefix;
}
void bus_set_counters(struct bus *b, struct bus_counters *c)
{
    /* What it counted so far joins what the owner's counters hold (a
     * predecessor's, in a worker's slot). */
    for (int i = 0; i < 2; i++)
        gauge_set(&c->connected[i], gauge_get(&b->own.connected[i]));
    counter_add(&c->reconnects, counter_get(&b->own.reconnects));
    counter_add(&c->dropped, counter_get(&b->own.dropped));
    b->ctr = c;
}

int bus_sub_ready(const struct bus *b)
{
    return b && b->sub.ready;
}
int bus_cmd_ready(const struct bus *b)
{
    return b && b->cmd.ready;
}

/* Builds "<prefix><name>" into buf; returns its length, 0 if it does not fit. */
static size_t bus_channel(const struct bus *b, char *buf, size_t size, const char *name, size_t len)
{
    if (b->prefix_len + len > size)
        return 0;
    memcpy(buf, b->prefix, b->prefix_len);
    memcpy(buf + b->prefix_len, name, len);
    return b->prefix_len + len;
}

static void bus_message_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply *reply = r;
    struct bus *b = privdata;
    (void)ac;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3)
        return;
    redisReply *kind = reply->element[0];
    if (kind->type != REDIS_REPLY_STRING || strcmp(kind->str, "message") != 0)
        return;
    redisReply *ch = reply->element[1], *data = reply->element[2];
    if (ch->type != REDIS_REPLY_STRING || data->type != REDIS_REPLY_STRING)
        return;
    if (ch->len < b->prefix_len)
        return;
    b->h.message(b->h.arg, ch->str + b->prefix_len, ch->len - b->prefix_len, data->str, data->len);
}

static void bus_sub_cmd(struct bus *b, const char *verb, const char *name, size_t len)
{
    char ch[512];
    size_t n = bus_channel(b, ch, sizeof(ch), name, len);
    if (!b->sub.ready || n == 0)
        return;
    const char *argv[2] = {verb, ch};
    size_t argvlen[2] = {strlen(verb), n};
    redisAsyncCommandArgv(b->sub.ac, bus_message_cb, b, 2, argv, argvlen);
}

void bus_subscribe(struct bus *b, const char *name, size_t len)
{
    bus_sub_cmd(b, "SUBSCRIBE", name, len);
}

void bus_unsubscribe(struct bus *b, const char *name, size_t len)
{
    bus_sub_cmd(b, "UNSUBSCRIBE", name, len);
}

struct bus_call {
    struct bus_conn *bc;
    redisCallbackFn *cb;
    void *privdata;
};

static void bus_call_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct bus_call *call = privdata;
    call->bc->pending--;
    if (reply && ((redisReply *)reply)->type == REDIS_REPLY_ERROR)
        log_err("bus: %s", ((redisReply *)reply)->str);
    if (call->cb)
        call->cb(ac, reply, call->privdata);
    free(call);
}

static int bus_drop(struct bus *b, const char *what)
{
    counter_add(&b->ctr->dropped, 1);
    if (b->dropped++ % 10000 == 0)
        log_err("bus %s:%d: %s dropped: %s (%lu so far)", b->host, b->port, what,
                b->cmd.ready ? "too many replies pending" : "not connected", b->dropped);
    return -1;
}

int bus_command_argv(struct bus *b, redisCallbackFn *cb, void *privdata, int argc,
                     const char **argv, const size_t *argvlen)
{
    struct bus_conn *bc = &b->cmd;
    if (!bc->ready || bc->pending >= BUS_MAX_PENDING)
        return bus_drop(b, argv[0]);
    struct bus_call *call = malloc(sizeof(*call));
    if (!call) {
        counter_add(&b->ctr->dropped, 1);
        return -1;
    }
    call->bc = bc;
    call->cb = cb;
    call->privdata = privdata;
    if (redisAsyncCommandArgv(bc->ac, bus_call_cb, call, argc, argv, argvlen) != REDIS_OK) {
        free(call);
        return bus_drop(b, argv[0]);
    }
    bc->pending++;
    return 0;
}

int bus_publish(struct bus *b, const char *name, size_t nlen, const void *hdr, size_t hlen,
                const void *body, size_t blen)
{
    char ch[512];
    size_t n = bus_channel(b, ch, sizeof(ch), name, nlen);
    char *msg = n > 0 ? malloc(hlen + blen + 1) : NULL;
    if (!msg) { /* a channel name too long, or out of memory */
        counter_add(&b->ctr->dropped, 1);
        return -1;
    }
    /* The message goes out as one value: header and body joined once here. */
    memcpy(msg, hdr, hlen);
    if (blen)
        memcpy(msg + hlen, body, blen);
    const char *argv[3] = {"PUBLISH", ch, msg};
    size_t argvlen[3] = {7, n, hlen + blen};
    int rc = bus_command_argv(b, NULL, NULL, 3, argv, argvlen);
    free(msg);
    return rc < 0 ? -1 : 0;
}
