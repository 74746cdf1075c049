/* nbus.c - the NATS bus connection (see nbus.h). */
#include "nbus.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nats/nats.h>

/* The adapter is a header of function definitions: this file is its one user.
 * Its keep-alive callback ignores its arguments. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#include <nats/adapters/libevent.h>
#pragma GCC diagnostic pop

#include "backoff.h"
#include "log.h"

#define NBUS_AUTH_MAX 256
#define NBUS_HOST_MAX 300
/* A connection libnats gave up (it does on an authorization error) is made
 * anew after this back-off, as the Redis bus's (bus.c). */
#define NBUS_RETRY_MIN 0.1
#define NBUS_RETRY_MAX 5.0

enum { NBUS_EV_MSG, NBUS_EV_UP, NBUS_EV_DOWN, NBUS_EV_SLOW, NBUS_EV_CLOSED };

struct nbus_item {
    natsMsg *msg; /* NBUS_EV_MSG */
    int ev, tag;
};

/* What a subscription's callback is given: the bus and the tag. */
struct nbus_tag {
    struct nbus *b;
    int tag;
};

struct nbus_sub {
    struct nbus *b;
    natsSubscription *sub;
    char *subject, *queue; /* to subscribe again on a new connection */
    int tag;
    struct nbus_sub *next, **pprev;
};

struct nbus {
    struct event_base *base;
    natsConnection *nc;
    natsOptions *opts;
    struct nbus_handlers h;
    char prefix[128];
    char inbox[128];
    char url[NBUS_HOST_MAX]; /* the server connected to, for log lines */
    struct bus_counters own, *ctr;
    struct nbus_tag tags[NBUS_TAGS];
    struct event *wake;
    int up;                      /* the loop's view: connected */
    int ever_up;                 /* reconnects count from the second time */
    double down_at;              /* monotonic seconds, while down */
    unsigned long dropped_since; /* publishes dropped since the last log line */
    struct event *retry;         /* makes a connection libnats gave up anew */
    struct backoff backoff;
    struct nbus_sub *subs; /* every subscription */
    /* Filled by libnats' threads, emptied by the loop. */
    pthread_mutex_t mu;
    struct nbus_item *q;
    size_t qn, qcap, qbytes;
    /* The loop's: the array it emptied last, handed back at the next swap,
     * so that no batch allocates. */
    struct nbus_item *spare;
    size_t sparecap;
    int woken;
    unsigned long overflow; /* messages dropped: the queue was full */
    /* nbus_free waits for the connection's closed callback, libnats' last. */
    int freeing, nc_closed;
    pthread_cond_t closed_cv;
};

int nbus_is_nats(const char *url)
{
    return url != NULL && strncmp(url, "nats://", 7) == 0;
}

/* Splits url into servers ("nats://host:port" each), user, password and
 * token. 0, or -1 with err. */
static int nbus_split(const char *url, char servers[][NBUS_HOST_MAX], int *n, char *user,
                      char *pass, char *token, char *err, size_t errlen)
{
    const char *p, *at, *end;
    *n = 0;
    user[0] = pass[0] = token[0] = '\0';
    if (!nbus_is_nats(url)) {
        snprintf(err, errlen, "it must start with nats://");
        return -1;
    }
    p = url + 7;
    if ((at = strchr(p, '@')) != NULL) {
        size_t ulen = (size_t)(at - p);
        const char *colon = memchr(p, ':', ulen);
        if (ulen == 0 || ulen >= NBUS_AUTH_MAX) {
            snprintf(err, errlen, "the credentials before '@' must be 1..%d bytes",
                     NBUS_AUTH_MAX - 1);
            return -1;
        }
        if (colon) {
            memcpy(user, p, (size_t)(colon - p));
            user[colon - p] = '\0';
            memcpy(pass, colon + 1, (size_t)(at - colon - 1));
            pass[at - colon - 1] = '\0';
        } else {
            memcpy(token, p, ulen);
            token[ulen] = '\0';
        }
        p = at + 1;
    }
    for (;;) {
        end = strchr(p, ',');
        if (end == NULL)
            end = p + strlen(p);
        if (strncmp(p, "nats://", 7) == 0)
            p += 7;
        size_t len = (size_t)(end - p);
        const char *colon = NULL;
        for (const char *q = p; q < end; q++)
            if (*q == ':')
                colon = q; /* the last one: "[::1]:4222" */
        if (len == 0 || colon == NULL || colon == p || len >= NBUS_HOST_MAX - 8) {
            snprintf(err, errlen, "each server must be host:port, got \"%.*s\"", (int)len, p);
            return -1;
        }
        char *e;
        long port = strtol(colon + 1, &e, 10);
        if (e != end || port < 1 || port > 65535) {
            snprintf(err, errlen, "bad port in \"%.*s\"", (int)len, p);
            return -1;
        }
        for (const char *q = p; q < end; q++) {
            if (*q == '/' || *q == '@' || *q == ' ' || *q == '?') {
                snprintf(err, errlen, "bad server \"%.*s\"", (int)len, p);
                return -1;
            }
        }
        if (*n == NBUS_SERVERS_MAX) {
            snprintf(err, errlen, "at most %d servers", NBUS_SERVERS_MAX);
            return -1;
        }
        snprintf(servers[*n], NBUS_HOST_MAX, "nats://%.*s", (int)len, p);
        (*n)++;
        if (*end == '\0')
            return 0;
        p = end + 1;
    }
}

int nbus_parse_url(const char *url, char *err, size_t errlen)
{
    char servers[NBUS_SERVERS_MAX][NBUS_HOST_MAX];
    char user[NBUS_AUTH_MAX], pass[NBUS_AUTH_MAX], token[NBUS_AUTH_MAX];
    int n;
    return nbus_split(url, servers, &n, user, pass, token, err, errlen);
}

void nbus_global_init(void)
{
    natsLibevent_Init();
}

size_t nbus_subject_for(const char *prefix, char out[NBUS_SUBJECT_MAX], const char *kind,
                        const void *name, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t pl = strlen(prefix), kl = strlen(kind), n = 0;
    const unsigned char *s = name;
    if (pl + kl + 3 * len + 2 > NBUS_SUBJECT_MAX) /* cannot happen: bounded by the callers */
        len = (NBUS_SUBJECT_MAX - pl - kl - 2) / 3;
    memcpy(out, prefix, pl);
    memcpy(out + pl, kind, kl);
    n = pl + kl;
    if (name != NULL) {
        if (len == 0)
            out[n++] = '%';
        for (size_t i = 0; i < len; i++) {
            unsigned char ch = s[i];
            if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')
                || ch == '_' || ch == '-') {
                out[n++] = (char)ch;
            } else {
                out[n++] = '%';
                out[n++] = hex[ch >> 4];
                out[n++] = hex[ch & 15];
            }
        }
    }
    out[n] = '\0';
    return n;
}

size_t nbus_subject(const struct nbus *b, char out[NBUS_SUBJECT_MAX], const char *kind,
                    const void *name, size_t len)
{
    return nbus_subject_for(b->prefix, out, kind, name, len);
}

static double nbus_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- libnats' threads: queue and wake the loop ---- */

static void nbus_push(struct nbus *b, natsMsg *msg, int ev, int tag)
{
    /* Counted with its slot, so that empty messages are bounded too. */
    size_t len = (msg ? (size_t)natsMsg_GetDataLength(msg) : 0) + sizeof(struct nbus_item);
    int wake = 0;
    pthread_mutex_lock(&b->mu);
    if (b->freeing) {
        pthread_mutex_unlock(&b->mu);
        if (msg)
            natsMsg_Destroy(msg);
        return;
    }
    if (msg && b->qbytes + len > NBUS_QUEUE_MAX) {
        b->overflow++;
        pthread_mutex_unlock(&b->mu);
        natsMsg_Destroy(msg);
        return;
    }
    if (b->qn == b->qcap) {
        size_t cap = b->qcap ? 2 * b->qcap : 256;
        struct nbus_item *q = realloc(b->q, cap * sizeof(*q));
        if (q == NULL) {
            b->overflow += msg != NULL;
            pthread_mutex_unlock(&b->mu);
            if (msg)
                natsMsg_Destroy(msg);
            return;
        }
        b->q = q;
        b->qcap = cap;
    }
    b->q[b->qn++] = (struct nbus_item){msg, ev, tag};
    b->qbytes += len;
    if (!b->woken)
        wake = b->woken = 1;
    pthread_mutex_unlock(&b->mu);
    if (wake)
        event_active(b->wake, EV_READ, 0);
}

static void nbus_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    struct nbus_tag *t = closure;
    (void)nc;
    (void)sub;
    nbus_push(t->b, msg, NBUS_EV_MSG, t->tag);
}

static void nbus_on_up(natsConnection *nc, void *closure)
{
    (void)nc;
    nbus_push(closure, NULL, NBUS_EV_UP, 0);
}

static void nbus_on_down(natsConnection *nc, void *closure)
{
    (void)nc;
    nbus_push(closure, NULL, NBUS_EV_DOWN, 0);
}

/* libnats will not try again (an authorization error): made anew on the loop.
 * The last callback of a connection: b is not touched after the signal. */
static void nbus_on_closed(natsConnection *nc, void *closure)
{
    struct nbus *b = closure;
    (void)nc;
    nbus_push(b, NULL, NBUS_EV_CLOSED, 0);
    pthread_mutex_lock(&b->mu);
    b->nc_closed = 1;
    pthread_cond_signal(&b->closed_cv);
    pthread_mutex_unlock(&b->mu);
}

static void nbus_on_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    (void)nc;
    (void)sub;
    if (err == NATS_SLOW_CONSUMER)
        nbus_push(closure, NULL, NBUS_EV_SLOW, 0);
}

/* ---- the loop ---- */

static void nbus_went_up(struct nbus *b)
{
    if (natsConnection_GetConnectedUrl(b->nc, b->url, sizeof(b->url)) != NATS_OK)
        snprintf(b->url, sizeof(b->url), "?");
    if (b->up)
        return;
    b->up = 1;
    gauge_set(&b->ctr->connected[0], 1);
    gauge_set(&b->ctr->connected[1], 1);
    if (b->ever_up) {
        counter_add(&b->ctr->reconnects, 1);
        log_info("bus: connected to NATS %s again after %.0f ms; what was published for this "
                 "connection meanwhile is lost",
                 b->url, 1000 * (nbus_now() - b->down_at));
    } else {
        log_info("bus: connected to NATS %s", b->url);
    }
    if (b->dropped_since)
        log_err("bus: %lu publishes were dropped while NATS was away", b->dropped_since);
    b->dropped_since = 0;
    b->ever_up = 1;
    backoff_reset(&b->backoff);
    if (b->h.up)
        b->h.up(b->h.arg);
}

static void nbus_went_down(struct nbus *b)
{
    if (!b->up)
        return;
    b->up = 0;
    b->down_at = nbus_now();
    gauge_set(&b->ctr->connected[0], 0);
    gauge_set(&b->ctr->connected[1], 0);
    log_err("bus: lost NATS %s; reconnecting (to the next server of the list, if any); publishes "
            "are dropped until then",
            b->url);
    if (b->h.down)
        b->h.down(b->h.arg);
}

static void nbus_went_closed(struct nbus *b)
{
    const char *err = NULL;
    natsStatus s = natsConnection_GetLastError(b->nc, &err);
    double d = backoff_next(&b->backoff);
    struct timeval tv = backoff_timeval(d);
    nbus_went_down(b);
    log_err("bus: NATS %s refused the connection or gave it up (%s; are the credentials in BUS "
            "right?); connecting again in %.1f s",
            b->url, err && *err ? err : natsStatus_GetText(s), d);
    evtimer_add(b->retry, &tv);
}

static natsStatus nbus_sub_make(struct nbus *b, struct nbus_sub *s);

static void nbus_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    struct nbus *b = arg;
    natsConnection *nc = NULL;
    (void)fd;
    (void)what;
    pthread_mutex_lock(&b->mu);
    b->nc_closed = 0;
    pthread_mutex_unlock(&b->mu);
    natsStatus s = natsConnection_Connect(&nc, b->opts);
    if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED) {
        double d = backoff_next(&b->backoff);
        struct timeval tv = backoff_timeval(d);
        log_err("bus: NATS %s: %s; connecting again in %.1f s", b->url, natsStatus_GetText(s), d);
        pthread_mutex_lock(&b->mu);
        b->nc_closed = 1; /* still the old one, closed */
        pthread_mutex_unlock(&b->mu);
        evtimer_add(b->retry, &tv);
        return;
    }
    for (struct nbus_sub *sub = b->subs; sub; sub = sub->next) {
        natsSubscription_Destroy(sub->sub);
        sub->sub = NULL;
    }
    natsConnection_Destroy(b->nc);
    b->nc = nc;
    for (struct nbus_sub *sub = b->subs; sub; sub = sub->next)
        nbus_sub_make(b, sub);
    if (s == NATS_OK)
        nbus_push(b, NULL, NBUS_EV_UP, 0);
}

static void nbus_wake_cb(evutil_socket_t fd, short what, void *arg)
{
    struct nbus *b = arg;
    struct nbus_item *q;
    size_t n;
    unsigned long overflow;
    (void)fd;
    (void)what;
    pthread_mutex_lock(&b->mu);
    q = b->q;
    n = b->qn;
    overflow = b->overflow;
    size_t cap = b->qcap;
    b->q = b->spare;
    b->qcap = b->sparecap;
    b->spare = q;
    b->sparecap = cap;
    b->qn = b->qbytes = 0;
    b->overflow = 0;
    b->woken = 0;
    pthread_mutex_unlock(&b->mu);
    if (overflow) {
        counter_add(&b->ctr->dropped, overflow);
        log_err("bus: %lu messages from NATS dropped: over %u bytes waited for this process",
                overflow, NBUS_QUEUE_MAX);
    }
    for (size_t i = 0; i < n; i++) {
        natsMsg *m = q[i].msg;
        switch (q[i].ev) {
        case NBUS_EV_MSG:
            if (b->h.message)
                b->h.message(b->h.arg, q[i].tag, natsMsg_GetSubject(m), natsMsg_GetReply(m),
                             natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m));
            natsMsg_Destroy(m);
            break;
        case NBUS_EV_UP:
            nbus_went_up(b);
            break;
        case NBUS_EV_DOWN:
            nbus_went_down(b);
            break;
        case NBUS_EV_SLOW:
            counter_add(&b->ctr->dropped, 1);
            log_err("bus: NATS %s: messages dropped by the client library (slow consumer)", b->url);
            break;
        case NBUS_EV_CLOSED:
            nbus_went_closed(b);
            break;
        }
    }
}

struct nbus *nbus_new(struct event_base *base, const char *url, const char *prefix,
                      int link_timeout, const char *name, const struct nbus_handlers *h)
{
    char servers[NBUS_SERVERS_MAX][NBUS_HOST_MAX];
    const char *list[NBUS_SERVERS_MAX];
    char user[NBUS_AUTH_MAX], pass[NBUS_AUTH_MAX], token[NBUS_AUTH_MAX], err[256];
    int n;
    natsStatus s;
    struct nbus *b;

    if (nbus_split(url, servers, &n, user, pass, token, err, sizeof(err)) < 0) {
        log_err("bus: BUS %s: %s", url, err);
        return NULL;
    }
    if ((b = calloc(1, sizeof(*b))) == NULL)
        return NULL;
    b->base = base;
    b->h = *h;
    b->ctr = &b->own;
    snprintf(b->prefix, sizeof(b->prefix), "%s", prefix);
    snprintf(b->url, sizeof(b->url), "%s", servers[0]);
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->closed_cv, NULL);
    backoff_init(&b->backoff, NBUS_RETRY_MIN, NBUS_RETRY_MAX);
    for (int i = 0; i < NBUS_TAGS; i++)
        b->tags[i] = (struct nbus_tag){b, i};
    for (int i = 0; i < n; i++)
        list[i] = servers[i];
    if ((b->wake = event_new(base, -1, 0, nbus_wake_cb, b)) == NULL
        || (b->retry = evtimer_new(base, nbus_retry_cb, b)) == NULL)
        goto fail;
    s = natsOptions_Create(&b->opts);
    if (s == NATS_OK)
        s = natsOptions_SetServers(b->opts, list, n);
    /* The list in its order: the first is the preferred server. */
    if (s == NATS_OK)
        s = natsOptions_SetNoRandomize(b->opts, true);
    if (s == NATS_OK && user[0])
        s = natsOptions_SetUserInfo(b->opts, user, pass);
    if (s == NATS_OK && token[0])
        s = natsOptions_SetToken(b->opts, token);
    if (s == NATS_OK)
        s = natsOptions_SetName(b->opts, name);
    if (s == NATS_OK)
        s = natsOptions_SetEventLoop(b->opts, base, natsLibevent_Attach, natsLibevent_Read,
                                     natsLibevent_Write, natsLibevent_Detach);
    /* A request nobody subscribes to is answered by its deadline, not by
     * the server's empty "no responders" status message. */
    if (s == NATS_OK)
        s = natsOptions_DisableNoResponders(b->opts, true);
    /* One delivery thread for every subscription: messages stay in order. */
    if (s == NATS_OK)
        s = natsOptions_UseGlobalMessageDelivery(b->opts, true);
    if (s == NATS_OK)
        s = natsOptions_SetAllowReconnect(b->opts, true);
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(b->opts, -1);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectWait(b->opts, 100);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectJitter(b->opts, 100, 100);
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(b->opts, 2000);
    /* While the loop knows the connection is down, publishes are dropped
     * (nbus_publish); the few made before it hears of it wait in libnats'
     * reconnect buffer (8 MiB) and go out after the reconnect. */
    if (s == NATS_OK && link_timeout > 0) {
        s = natsOptions_SetPingInterval(b->opts, link_timeout * 1000L / 3);
        if (s == NATS_OK)
            s = natsOptions_SetMaxPingsOut(b->opts, 2);
    }
    if (s == NATS_OK)
        s = natsOptions_SetRetryOnFailedConnect(b->opts, true, nbus_on_up, b);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectedCB(b->opts, nbus_on_up, b);
    if (s == NATS_OK)
        s = natsOptions_SetDisconnectedCB(b->opts, nbus_on_down, b);
    if (s == NATS_OK)
        s = natsOptions_SetClosedCB(b->opts, nbus_on_closed, b);
    if (s == NATS_OK)
        s = natsOptions_SetErrorHandler(b->opts, nbus_on_error, b);
    if (s != NATS_OK) {
        log_err("bus: NATS options: %s", natsStatus_GetText(s));
        goto fail;
    }
    s = natsConnection_Connect(&b->nc, b->opts);
    if (s == NATS_OK) {
        nbus_push(b, NULL, NBUS_EV_UP, 0); /* connected at once: no callback for that */
    } else if (s != NATS_NOT_YET_CONNECTED) {
        log_err("bus: NATS %s: %s", url, natsStatus_GetText(s));
        goto fail;
    } else {
        log_err("bus: NATS %s not reachable yet; retrying", servers[0]);
        b->down_at = nbus_now();
    }
    char *ib = NULL;
    if (natsInbox_Create(&ib) != NATS_OK) {
        log_err("bus: out of memory");
        goto fail;
    }
    snprintf(b->inbox, sizeof(b->inbox), "%s", ib);
    natsInbox_Destroy(ib);
    return b;
fail:
    nbus_free(b);
    return NULL;
}

void nbus_free(struct nbus *b)
{
    if (b == NULL)
        return;
    if (b->nc) {
        pthread_mutex_lock(&b->mu);
        b->freeing = 1;
        pthread_mutex_unlock(&b->mu);
        natsConnection_Close(b->nc);
        /* Its callbacks come from libnats' thread, the closed one last: b
         * must outlive them (bounded: a connection closed already says so). */
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 2;
        pthread_mutex_lock(&b->mu);
        while (!b->nc_closed && pthread_cond_timedwait(&b->closed_cv, &b->mu, &until) == 0)
            ;
        pthread_mutex_unlock(&b->mu);
        natsConnection_Destroy(b->nc);
    }
    natsOptions_Destroy(b->opts);
    /* libnats' threads (delivery, timers) are done before the memory their
     * callbacks use goes: one bus per process, so the library goes with it. */
    nats_CloseAndWait(2000);
    /* Nothing calls back now: what is queued goes unread. */
    for (size_t i = 0; i < b->qn; i++)
        if (b->q[i].msg)
            natsMsg_Destroy(b->q[i].msg);
    free(b->q);
    free(b->spare);
    if (b->wake)
        event_free(b->wake);
    if (b->retry)
        event_free(b->retry);
    pthread_cond_destroy(&b->closed_cv);
    pthread_mutex_destroy(&b->mu);
    free(b);
}

void nbus_set_counters(struct nbus *b, struct bus_counters *c)
{
    for (int i = 0; i < 2; i++)
        gauge_set(&c->connected[i], gauge_get(&b->own.connected[i]));
    counter_add(&c->reconnects, counter_get(&b->own.reconnects));
    counter_add(&c->dropped, counter_get(&b->own.dropped));
    b->ctr = c;
}

const char *nbus_prefix(const struct nbus *b)
{
    return b->prefix;
}

int nbus_ready(const struct nbus *b)
{
    return b->up;
}

const char *nbus_inbox(const struct nbus *b)
{
    return b->inbox;
}

size_t nbus_max_payload(const struct nbus *b)
{
    int64_t n = b->up ? natsConnection_GetMaxPayload(b->nc) : 0;
    return n > 0 ? (size_t)n : 1u << 20;
}

/* NATS_CONNECTION_CLOSED is no failure: the subscription is made on the next
 * connection (nbus_retry_cb). */
static natsStatus nbus_sub_make(struct nbus *b, struct nbus_sub *s)
{
    natsStatus st;
    if (s->queue)
        st = natsConnection_QueueSubscribe(&s->sub, b->nc, s->subject, s->queue, nbus_on_msg,
                                           &b->tags[s->tag]);
    else
        st = natsConnection_Subscribe(&s->sub, b->nc, s->subject, nbus_on_msg, &b->tags[s->tag]);
    if (st != NATS_OK) {
        if (st != NATS_CONNECTION_CLOSED)
            log_err("bus: NATS subscribe %s: %s", s->subject, natsStatus_GetText(st));
        s->sub = NULL;
        return st;
    }
    /* The delivery thread only queues: the library's own pending limits need
     * not hold messages back on top of NBUS_QUEUE_MAX. */
    natsSubscription_SetPendingLimits(s->sub, -1, -1);
    return NATS_OK;
}

static void nbus_sub_free(struct nbus_sub *s)
{
    free(s->subject);
    free(s->queue);
    free(s);
}

struct nbus_sub *nbus_subscribe(struct nbus *b, const char *subject, const char *queue, int tag)
{
    struct nbus_sub *s = calloc(1, sizeof(*s));
    natsStatus st;
    if (s == NULL)
        return NULL;
    s->b = b;
    s->tag = tag;
    s->subject = strdup(subject);
    s->queue = queue ? strdup(queue) : NULL;
    if (s->subject == NULL || (queue && s->queue == NULL)
        || ((st = nbus_sub_make(b, s)) != NATS_OK && st != NATS_CONNECTION_CLOSED)) {
        nbus_sub_free(s);
        return NULL;
    }
    if ((s->next = b->subs) != NULL)
        b->subs->pprev = &s->next;
    b->subs = s;
    s->pprev = &b->subs;
    return s;
}

void nbus_unsubscribe(struct nbus_sub *s)
{
    if (s == NULL)
        return;
    if (s->sub) {
        natsSubscription_Unsubscribe(s->sub);
        natsSubscription_Destroy(s->sub);
    }
    *s->pprev = s->next;
    if (s->next)
        s->next->pprev = s->pprev;
    nbus_sub_free(s);
}

int nbus_publish(struct nbus *b, const char *subject, const char *reply, const void *hdr,
                 size_t hlen, const void *body, size_t blen)
{
    natsStatus st = NATS_CONNECTION_DISCONNECTED;
    unsigned char small[4096], *buf = small;
    size_t n = hlen + blen;
    if (b->up && n > nbus_max_payload(b))
        st = NATS_MAX_PAYLOAD;
    else if (b->up) {
        if (blen == 0)
            buf = (unsigned char *)hdr;
        else if (hlen == 0)
            buf = (unsigned char *)body;
        else if (n > sizeof(small) && (buf = malloc(n)) == NULL)
            st = NATS_NO_MEMORY;
        if (buf != NULL && buf != hdr && buf != body) {
            memcpy(buf, hdr, hlen);
            memcpy(buf + hlen, body, blen);
        }
        if (buf != NULL)
            st = reply ? natsConnection_PublishRequest(b->nc, subject, reply, buf, (int)n)
                       : natsConnection_Publish(b->nc, subject, buf, (int)n);
        if (buf != small && buf != hdr && buf != body)
            free(buf);
    }
    if (st == NATS_OK)
        return 0;
    counter_add(&b->ctr->dropped, 1);
    if (b->up)
        log_err("bus: publish on %s dropped (%zu bytes): %s", subject, n, natsStatus_GetText(st));
    else if (b->dropped_since++ == 0) /* the rest are counted, and told when it is back */
        log_err("bus: publish on %s dropped: not connected to NATS", subject);
    return -1;
}
