/* router_nats.c - the router on the NATS bus (BUS = "nats://...", DESIGN §16):
 * stateless, like router_bus.c on Redis. Each backend command is published
 * where the gateway workers subscribe (natslink.h): KICK, SEND_MSG, CH_ADD,
 * CH_DEL, BIND, UNBIND and SESSION_SET on gw.<server>.<worker> of each SID's
 * worker (read out of the SID), SEND_ALL and SEND_ALL_EX on all, CH_PUB and
 * CH_PUB_EX on ch.<channel>, SEND_UID and KICK_UID on u.<uid> of each uid.
 *
 * INFO and the queries go to every worker at once on q (natsq.h); the answer
 * is their sum, given when every worker the router knows of has answered, or
 * at the deadline with what came. The router knows the workers from their
 * heartbeats on hb (and asks who is there on who when it connects); a worker
 * silent for ROUTER_NATS_EXPIRE s, or that missed a deadline, is waited for no
 * more until it is heard again.
 *
 * It also serves the bus itself on <prefix>api (queue group "fooking-routers":
 * one router takes each request): a request is one router-protocol message,
 * run as a backend's, and a query's answer goes to the request's reply
 * subject. The Go library's NATS transport sends its queries there. */
#include "router_nats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "config.h"
#include "hmap.h"
#include "log.h"
#include "natsq.h"
#include "nbus.h"
#include "rmsg.h"
#include "router_cmd.h"

/* A worker unheard of this long is not waited for (3 heartbeats missed). */
#define ROUTER_NATS_EXPIRE 10.0
/* Just (re)connected: the workers' answers to who are still coming. */
#define ROUTER_NATS_WARMUP 0.3
/* A query's deadline (less with a smaller LINK_TIMEOUT). */
#define ROUTER_NATS_QUERY_MS 2000

enum { TAG_HB, TAG_ANSWER, TAG_API };

struct rn_query {
    struct router_nats *rn;
    uint32_t id;
    struct rconn *c;
    struct ranswer *a;
    uint16_t type;
    struct natsq_merge *merge;
    struct hmap *due;      /* "<server>:<worker>" keys still to answer */
    struct hmap *answered; /* ... and those that did */
    struct event *timer;
    int warming; /* waits for the warm-up too */
    double sent; /* when it went out */
    struct rn_query *next, **pprev;
};

struct router_nats {
    struct router *r;
    struct nbus *bus;
    struct nbus_sub *hb, *answers, *api;
    struct hmap *workers; /* 3-byte key -> struct rn_worker */
    struct hmap *queries; /* u32 id -> struct rn_query */
    struct rn_query *all;
    uint32_t next_id;
    double up_at;
    struct timeval deadline;
    char inbox[128]; /* "_INBOX.<id>" */
};

struct rn_worker {
    double seen;
};

static double rn_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void rn_key(unsigned char key[3], unsigned server, unsigned worker)
{
    key[0] = (unsigned char)(server >> 8);
    key[1] = (unsigned char)server;
    key[2] = (unsigned char)worker;
}

static struct router_nats *rn_of(const struct rconn *c)
{
    return router_conn_nats(c);
}

/* ---- commands ---- */

static void rn_publish(struct router_nats *rn, const char *subj, uint16_t type, const void *sp,
                       size_t slen, struct evbuffer *payload, const void *d, size_t dlen)
{
    struct evbuffer *msg = router_bus_message(type, sp, slen, payload, d, dlen);
    if (msg == NULL)
        return;
    size_t n = evbuffer_get_length(msg);
    nbus_publish(rn->bus, subj, NULL, evbuffer_pullup(msg, -1), n, NULL, 0);
    evbuffer_free(msg);
}

struct rn_split {
    struct router_nats *rn;
    const struct rmsg *m;
    struct evbuffer *payload;
};

static void rn_split_one(void *arg, unsigned server, unsigned worker, const unsigned char *sids,
                         size_t slen)
{
    struct rn_split *sp = arg;
    char name[32], subj[NBUS_SUBJECT_MAX];
    snprintf(name, sizeof(name), "gw.%u.%u", server, worker);
    nbus_subject(sp->rn->bus, subj, name, NULL, 0);
    rn_publish(sp->rn, subj, sp->m->type, sids, slen, sp->payload, sp->m->d, sp->m->len);
}

/* One publish per gateway worker, found from the ids inside each SID. */
static void rn_split(struct rconn *c, const struct rmsg *m, struct evbuffer *payload)
{
    struct rn_split sp = {rn_of(c), m, payload};
    router_sids_by_worker(m->s, m->slen, rn_split_one, &sp);
}

static void rn_send_all(struct rconn *c, const struct rmsg *m, struct evbuffer *payload)
{
    struct router_nats *rn = rn_of(c);
    char subj[NBUS_SUBJECT_MAX];
    nbus_subject(rn->bus, subj, "all", NULL, 0);
    rn_publish(rn, subj, m->type, m->s, m->slen, payload, NULL, 0);
}

static void rn_ch_pub(struct rconn *c, const struct rmsg *m, struct evbuffer *payload)
{
    struct router_nats *rn = rn_of(c);
    char subj[NBUS_SUBJECT_MAX];
    struct rmsg_ch_ex ex = {m->s, m->slen, NULL, 0};
    if (m->type == RMSG_CH_PUB_EX && rmsg_ch_ex_parse(m->s, m->slen, &ex) != RMSG_OK)
        return; /* validated before: cannot happen */
    nbus_subject(rn->bus, subj, "ch.", ex.channel, ex.chlen);
    rn_publish(rn, subj, m->type, m->s, m->slen, payload, NULL, 0);
}

/* SEND_UID, KICK_UID: on u.<uid> of each uid (once each), with S that uid. */
static void rn_uids(struct rconn *c, const struct rmsg *m, struct evbuffer *payload)
{
    struct router_nats *rn = rn_of(c);
    struct hmap *seen = hmap_new(8);
    const unsigned char *uid;
    size_t off = 0, len;
    if (seen == NULL)
        return;
    while (rmsg_uids_next(m->s, m->slen, &off, &uid, &len) == 1) {
        unsigned char s[1 + RMSG_MAX_UID];
        char subj[NBUS_SUBJECT_MAX];
        if (hmap_has(seen, uid, len) || hmap_put(seen, uid, len, (void *)1, NULL) < 0)
            continue;
        s[0] = (unsigned char)len;
        memcpy(s + 1, uid, len);
        nbus_subject(rn->bus, subj, "u.", uid, len);
        rn_publish(rn, subj, m->type, s, 1 + len, payload, NULL, 0);
    }
    hmap_free(seen, NULL);
}

static void rn_gateway_msg(struct rconn *c, const struct rmsg *m, struct evbuffer *payload)
{
    (void)payload;
    log_err("router: %s: %s from a gateway, but this router runs on the bus (BUS): gateways "
            "must set BUS too; closing",
            router_conn_peer(c), rmsg_type_name(m->type));
    router_conn_kill(c);
}

static void rn_unexpected(struct rconn *c, const struct rmsg *m, struct evbuffer *payload)
{
    (void)payload;
    log_err("router: %s: %s is not for the router to receive, ignored", router_conn_peer(c),
            rmsg_type_name(m->type));
}

/* ---- queries ---- */

static void rn_query_free(struct rn_query *q)
{
    if (q->timer)
        event_free(q->timer);
    natsq_merge_free(q->merge);
    if (q->due)
        hmap_free(q->due, NULL);
    if (q->answered)
        hmap_free(q->answered, NULL);
    uint32_t id = q->id;
    hmap_del(q->rn->queries, &id, sizeof(id), NULL);
    if (q->pprev) {
        *q->pprev = q->next;
        if (q->next)
            q->next->pprev = q->pprev;
    }
    free(q);
}

/* Answers and frees q: with the sum, or ERROR (why) when why is set. */
static void rn_query_finish(struct rn_query *q, const char *why)
{
    struct rconn *c = q->c;
    if (router_conn_release(c)) {
        struct evbuffer *out = why ? NULL : evbuffer_new();
        int rc = out ? natsq_merge_result(q->merge, out) : -1;
        if (why) {
            router_answer_refuse(c, q->a, q->type, why);
        } else if (rc == 0) {
            size_t n = evbuffer_get_length(out);
            router_answer_fill(c, q->a, q->type, evbuffer_pullup(out, -1), n);
        } else if (rc == 1) {
            log_info("router: %s: %s answer over ROUTER_ANSWER_MAX (%zu bytes), answered ERROR",
                     router_conn_peer(c), rmsg_type_name(q->type), router_conn_answer_max(c));
            router_answer_refuse(c, q->a, q->type, "answer over ROUTER_ANSWER_MAX");
        } else {
            router_answer_refuse(c, q->a, q->type, "out of memory");
        }
        if (out)
            evbuffer_free(out);
    }
    rn_query_free(q);
}

static void rn_query_maybe_done(struct rn_query *q)
{
    if (hmap_count(q->due) == 0 && !q->warming)
        rn_query_finish(q, NULL);
}

/* Every worker heard from lately that has not answered q is waited for. */
static void rn_query_expect(struct rn_query *q, double now)
{
    struct hmap_iter it;
    const void *k;
    size_t klen;
    void *v;
    hmap_iter_init(&it);
    while (hmap_next(q->rn->workers, &it, &k, &klen, &v)) {
        struct rn_worker *w = v;
        if (now - w->seen < ROUTER_NATS_EXPIRE && !hmap_has(q->answered, k, klen))
            hmap_put(q->due, k, klen, (void *)1, NULL);
    }
}

static void rn_query_timer(evutil_socket_t fd, short what, void *arg)
{
    struct rn_query *q = arg;
    struct router_nats *rn = q->rn;
    (void)fd;
    (void)what;
    if (q->warming) { /* the warm-up is over: from now on, the deadline */
        q->warming = 0;
        rn_query_expect(q, rn_now()); /* those known since it was asked */
        if (hmap_count(q->due) == 0) {
            rn_query_finish(q, NULL);
            return;
        }
        evtimer_add(q->timer, &rn->deadline);
        return;
    }
    struct hmap_iter it;
    const void *k;
    size_t klen;
    hmap_iter_init(&it);
    while (hmap_next(q->due, &it, &k, &klen, NULL)) {
        const unsigned char *key = k;
        void *w = hmap_get(rn->workers, k, klen);
        /* Heard since the query went out: it (re)connected after, and missed
         * only this one. */
        if (w && ((struct rn_worker *)w)->seen > q->sent)
            continue;
        log_err("router: %s: gateway %u/%u did not answer %s on the bus within %ld ms; answered "
                "without it, and it is not waited for until it is heard again",
                router_conn_peer(q->c), (unsigned)key[0] << 8 | key[1], key[2],
                rmsg_type_name(q->type),
                (long)(rn->deadline.tv_sec * 1000 + rn->deadline.tv_usec / 1000));
        if (hmap_del(rn->workers, k, klen, &w))
            free(w);
    }
    rn_query_finish(q, NULL);
}

/* An answer has its query's type but an answer's S and D (natsq.h), which
 * rmsg_decode would check as the query's (a CH_COUNT's D must be empty...): only
 * the framing is read here, natsq_merge_add checks the rest. */
static int rn_answer_decode(const unsigned char *p, size_t len, struct rmsg *m)
{
    if (len < RMSG_HEADER_LEN)
        return -1;
    m->type = rmsg_get_u16(p);
    m->slen = rmsg_get_u16(p + 2);
    m->len = rmsg_get_u32(p + 4);
    m->s = p + RMSG_HEADER_LEN;
    m->d = m->s + m->slen;
    return rmsg_size(m) == len ? 0 : -1;
}

static void rn_answer(struct router_nats *rn, const char *subject, const char *data, size_t len)
{
    const char *dot = strrchr(subject, '.');
    struct rmsg m;
    unsigned server, worker;
    int status;
    unsigned char key[3];
    uint32_t id;
    char *end;
    unsigned long v = dot ? strtoul(dot + 1, &end, 10) : 0;
    if (dot == NULL || *end != '\0' || v > UINT32_MAX)
        return;
    id = (uint32_t)v;
    struct rn_query *q = hmap_get(rn->queries, &id, sizeof(id));
    if (q == NULL)
        return; /* after its deadline */
    int ok = rn_answer_decode((const unsigned char *)data, len, &m) == 0 && m.type == q->type
             && natsq_answer_s_parse(m.s, m.slen, &server, &worker, &status) == 0;
    if (ok) {
        rn_key(key, server, worker);
        /* A worker's answer delivered twice must not be added up twice. */
        if (hmap_has(q->answered, key, sizeof(key)))
            return;
        ok = natsq_merge_add(q->merge, server, worker, status, m.d, m.len) == 0;
    }
    if (!ok) {
        log_err("router: a malformed %s answer on the bus (%zu bytes), ignored",
                rmsg_type_name(q->type), len);
        return;
    }
    hmap_del(q->due, key, sizeof(key), NULL);
    hmap_put(q->answered, key, sizeof(key), (void *)1, NULL);
    struct rn_worker *w = hmap_get(rn->workers, key, sizeof(key));
    if (w == NULL && (w = calloc(1, sizeof(*w))) != NULL
        && hmap_put(rn->workers, key, sizeof(key), w, NULL) < 0) {
        free(w);
        w = NULL;
    }
    if (w)
        w->seen = rn_now();
    rn_query_maybe_done(q);
}

static void rn_query(struct rconn *c, const struct rmsg *m, struct evbuffer *payload)
{
    struct router_nats *rn = rn_of(c);
    struct rn_query *q;
    unsigned char head[NATSQ_REQ_HEAD + RMSG_HEADER_LEN];
    char reply[NBUS_SUBJECT_MAX];
    double now = rn_now();
    (void)payload;

    if (!nbus_ready(rn->bus)) {
        struct ranswer *a = router_answer_reserve(c);
        if (a) {
            log_err("router: %s: %s: the bus is not connected, answered ERROR", router_conn_peer(c),
                    rmsg_type_name(m->type));
            router_answer_refuse(c, a, m->type, "the bus is not connected");
        }
        return;
    }
    if ((q = calloc(1, sizeof(*q))) == NULL)
        goto oom;
    q->rn = rn;
    q->c = c;
    q->type = m->type;
    q->id = rn->next_id++;
    q->sent = now;
    q->merge = natsq_merge_new(m->type, router_conn_answer_max(c), m->slen / RMSG_SID_LEN);
    q->due = hmap_new(16);
    q->answered = hmap_new(16);
    q->timer = evtimer_new(router_base(rn->r), rn_query_timer, q);
    if (!q->merge || !q->due || !q->answered || !q->timer
        || hmap_put(rn->queries, &q->id, sizeof(q->id), q, NULL) < 0) {
        rn_query_free(q);
        goto oom;
    }
    if ((q->next = rn->all) != NULL)
        rn->all->pprev = &q->next;
    rn->all = q;
    q->pprev = &rn->all;
    if ((q->a = router_answer_reserve(c)) == NULL) {
        rn_query_free(q);
        return;
    }
    rn_query_expect(q, now);
    rmsg_put_u32(head, (uint32_t)router_conn_answer_max(c));
    rmsg_encode_header(head + NATSQ_REQ_HEAD, m->type, m->slen, 0); /* no query has a D */
    struct evbuffer *req = evbuffer_new();
    if (req == NULL) {
        rn_query_free(q);
        goto oom;
    }
    evbuffer_add(req, head, sizeof(head));
    evbuffer_add(req, m->s, m->slen);
    snprintf(reply, sizeof(reply), "%s.%u", rn->inbox, q->id);
    char subj[NBUS_SUBJECT_MAX];
    nbus_subject(rn->bus, subj, "q", NULL, 0);
    size_t n = evbuffer_get_length(req);
    int rc = nbus_publish(rn->bus, subj, reply, evbuffer_pullup(req, -1), n, NULL, 0);
    evbuffer_free(req);
    router_conn_hold(c);
    if (rc < 0) {
        rn_query_finish(q, "the bus is not connected");
        return;
    }
    if (now - rn->up_at < ROUTER_NATS_WARMUP) {
        struct timeval tv = {0, (long)((ROUTER_NATS_WARMUP - (now - rn->up_at)) * 1e6)};
        q->warming = 1;
        evtimer_add(q->timer, &tv);
    } else if (hmap_count(q->due) == 0) {
        rn_query_finish(q, NULL); /* no worker: nothing anywhere */
    } else {
        evtimer_add(q->timer, &rn->deadline);
    }
    return;
oom:
    log_err("router: %s: out of memory asking the bus for %s, closing", router_conn_peer(c),
            rmsg_type_name(m->type));
    router_conn_kill(c);
}

/* ---- heartbeats, and the api subject ---- */

static void rn_heartbeat(struct router_nats *rn, const char *data, size_t len)
{
    char text[96];
    unsigned server, worker;
    unsigned char key[3];
    int n;
    if (len >= sizeof(text))
        return;
    memcpy(text, data, len);
    text[len] = '\0';
    if (sscanf(text, "down %u %u%n", &server, &worker, &n) == 2 && n == (int)len) {
        void *w;
        rn_key(key, server, worker);
        if (hmap_del(rn->workers, key, sizeof(key), &w))
            free(w);
        return;
    }
    if (sscanf(text, "up %u %u", &server, &worker) != 2 || server > 65535 || worker > 255)
        return;
    rn_key(key, server, worker);
    struct rn_worker *w = hmap_get(rn->workers, key, sizeof(key));
    if (w == NULL) {
        if ((w = calloc(1, sizeof(*w))) == NULL)
            return;
        if (hmap_put(rn->workers, key, sizeof(key), w, NULL) < 0) {
            free(w);
            return;
        }
    }
    w->seen = rn_now();
}

struct rn_api {
    struct router_nats *rn;
    struct rconn *c;
    char reply[NBUS_SUBJECT_MAX];
};

static void rn_api_answer(void *arg, struct evbuffer *msg)
{
    struct rn_api *a = arg;
    if (msg != NULL) {
        size_t n = evbuffer_get_length(msg);
        const unsigned char *p = evbuffer_pullup(msg, -1);
        if (n > nbus_max_payload(a->rn->bus) && n >= 2) {
            /* It could not be published: say so rather than leave the
             * requester waiting for an answer that never comes. */
            unsigned char err[RMSG_ERROR_MSG_MAX];
            uint16_t type = rmsg_get_u16(p);
            log_info("router: bus api: %s answer of %zu bytes over the bus's max_payload (%zu), "
                     "answered ERROR",
                     rmsg_type_name(type), n, nbus_max_payload(a->rn->bus));
            n = rmsg_encode_error(err, type, "answer over the NATS server's max_payload");
            nbus_publish(a->rn->bus, a->reply, NULL, err, n, NULL, 0);
        } else {
            nbus_publish(a->rn->bus, a->reply, NULL, p, n, NULL, 0);
        }
    }
    router_local_close(a->c);
    free(a);
}

static void rn_api(struct router_nats *rn, const char *reply, const char *data, size_t len)
{
    struct rmsg m;
    size_t consumed = 0;
    int rc = rmsg_decode(data, len, (uint32_t)len, &m, &consumed);
    /* A whole message refused for its content (consumed set) goes on:
     * router_local_run refuses it, and a query is answered ERROR. */
    if (consumed == 0 || consumed != len) {
        log_err("router: a malformed message on the bus's api subject (%zu bytes): %s; ignored",
                len, consumed ? "trailing bytes" : rmsg_strerror(rc));
        return;
    }
    int query = rmsg_is_query(m.type) || m.type == RMSG_INFO;
    struct rn_api *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return;
    a->rn = rn;
    snprintf(a->reply, sizeof(a->reply), "%s", reply ? reply : "");
    if ((a->c = router_local_new(rn->r, "bus api", query && reply ? rn_api_answer : NULL, a))
        == NULL) {
        free(a);
        return;
    }
    rc = router_local_run(a->c, &m);
    if (rc != RMSG_OK || !query || !reply) {
        if (rc != RMSG_OK)
            log_err("router: bus api: %s refused: %s", rmsg_type_name(m.type), rmsg_strerror(rc));
        if (rc != RMSG_OK && query && reply) {
            unsigned char err[RMSG_ERROR_MSG_MAX];
            size_t n = rmsg_encode_error(err, m.type, rmsg_strerror(rc));
            nbus_publish(rn->bus, reply, NULL, err, n, NULL, 0);
        }
        router_local_close(a->c);
        free(a);
    }
}

static void rn_message(void *arg, int tag, const char *subject, const char *reply, const char *data,
                       size_t len)
{
    struct router_nats *rn = arg;
    if (tag == TAG_HB)
        rn_heartbeat(rn, data, len);
    else if (tag == TAG_ANSWER)
        rn_answer(rn, subject, data, len);
    else
        rn_api(rn, reply, data, len);
}

static void rn_up(void *arg)
{
    struct router_nats *rn = arg;
    char subj[NBUS_SUBJECT_MAX];
    rn->up_at = rn_now();
    nbus_subject(rn->bus, subj, "who", NULL, 0);
    nbus_publish(rn->bus, subj, NULL, "", 0, NULL, 0);
}

static void rn_down(void *arg)
{
    struct router_nats *rn = arg;
    /* What is out is answered to the connection that was lost: not a sum of
     * nothing at the deadline, but an error now. */
    while (rn->all)
        rn_query_finish(rn->all, "the bus is not connected");
}

struct router_nats *router_nats_new(struct router *r, const struct config *cfg,
                                    struct bus_counters *ctr)
{
    struct router_nats *rn = calloc(1, sizeof(*rn));
    char subj[NBUS_SUBJECT_MAX];
    if (rn == NULL)
        return NULL;
    rn->r = r;
    long ms = ROUTER_NATS_QUERY_MS;
    if (cfg->link_timeout > 0 && cfg->link_timeout * 1000L < ms)
        ms = cfg->link_timeout * 1000L;
    rn->deadline = (struct timeval){ms / 1000, (ms % 1000) * 1000};
    struct nbus_handlers h = {.arg = rn, .up = rn_up, .down = rn_down, .message = rn_message};
    rn->workers = hmap_new(64);
    rn->queries = hmap_new(64);
    if (!rn->workers || !rn->queries)
        goto fail;
    rn->bus = nbus_new(router_base(r), cfg->bus, cfg->bus_prefix, cfg->link_timeout,
                       "fooking router", &h);
    if (rn->bus == NULL)
        goto fail;
    nbus_set_counters(rn->bus, ctr);
    snprintf(rn->inbox, sizeof(rn->inbox), "%s", nbus_inbox(rn->bus));
    snprintf(subj, sizeof(subj), "%s.*", rn->inbox);
    rn->answers = nbus_subscribe(rn->bus, subj, NULL, TAG_ANSWER);
    nbus_subject(rn->bus, subj, "hb", NULL, 0);
    rn->hb = nbus_subscribe(rn->bus, subj, NULL, TAG_HB);
    nbus_subject(rn->bus, subj, "api", NULL, 0);
    rn->api = nbus_subscribe(rn->bus, subj, "fooking-routers", TAG_API);
    if (!rn->answers || !rn->hb || !rn->api)
        goto fail;
    return rn;
fail:
    router_nats_free(rn);
    return NULL;
}

void router_nats_free(struct router_nats *rn)
{
    if (rn == NULL)
        return;
    /* What waits is answered ERROR before the connections go. */
    while (rn->all)
        rn_query_finish(rn->all, "the router is stopping");
    nbus_unsubscribe(rn->answers);
    nbus_unsubscribe(rn->hb);
    nbus_unsubscribe(rn->api);
    nbus_free(rn->bus);
    if (rn->workers)
        hmap_free(rn->workers, free);
    if (rn->queries)
        hmap_free(rn->queries, NULL);
    free(rn);
}

int router_nats_ready(const struct router_nats *rn)
{
    return nbus_ready(rn->bus);
}

const struct router_cmd router_nats_cmds[RMSG_TYPE_MAX + 1] = {
    [RMSG_AUTH] = {rn_gateway_msg, ROUTER_D_SKIP},
    [RMSG_CONN] = {rn_gateway_msg, ROUTER_D_SKIP},
    [RMSG_CLOSE] = {rn_gateway_msg, ROUTER_D_SKIP},
    [RMSG_KICK] = {rn_split, ROUTER_D_SKIP},
    [RMSG_SEND_MSG] = {rn_split, ROUTER_D_PAYLOAD},
    [RMSG_SEND_ALL] = {rn_send_all, ROUTER_D_PAYLOAD},
    [RMSG_CH_ADD] = {rn_split, ROUTER_D_BYTES},
    [RMSG_CH_DEL] = {rn_split, ROUTER_D_BYTES},
    [RMSG_CH_PUB] = {rn_ch_pub, ROUTER_D_PAYLOAD},
    [RMSG_CH_SUB] = {rn_gateway_msg, ROUTER_D_SKIP},
    [RMSG_CH_UNSUB] = {rn_gateway_msg, ROUTER_D_SKIP},
    [RMSG_INFO] = {rn_query, ROUTER_D_SKIP},
    [RMSG_SECRET] = {router_cmd_secret, ROUTER_D_BYTES},
    [RMSG_PING] = {router_cmd_ping, ROUTER_D_SKIP},
    [RMSG_PONG] = {router_cmd_pong, ROUTER_D_SKIP},
    [RMSG_BIND] = {rn_split, ROUTER_D_BYTES},
    [RMSG_UNBIND] = {rn_split, ROUTER_D_SKIP},
    [RMSG_SEND_UID] = {rn_uids, ROUTER_D_PAYLOAD},
    [RMSG_KICK_UID] = {rn_uids, ROUTER_D_SKIP},
    [RMSG_SESSION_SET] = {rn_split, ROUTER_D_PAYLOAD},
    [RMSG_SEND_ALL_EX] = {rn_send_all, ROUTER_D_PAYLOAD},
    [RMSG_CH_PUB_EX] = {rn_ch_pub, ROUTER_D_PAYLOAD},
    [RMSG_IS_ONLINE] = {rn_query, ROUTER_D_SKIP},
    [RMSG_UID_COUNT] = {rn_query, ROUTER_D_SKIP},
    [RMSG_UID_SIDS] = {rn_query, ROUTER_D_SKIP},
    [RMSG_SID_UID] = {rn_query, ROUTER_D_SKIP},
    [RMSG_SESSION_GET] = {rn_query, ROUTER_D_SKIP},
    [RMSG_CH_COUNT] = {rn_query, ROUTER_D_SKIP},
    [RMSG_CH_MEMBERS] = {rn_query, ROUTER_D_SKIP},
    [RMSG_CH_SESSIONS] = {rn_query, ROUTER_D_SKIP},
    [RMSG_CHANNELS] = {rn_query, ROUTER_D_SKIP},
    [RMSG_ERROR] = {rn_unexpected, ROUTER_D_SKIP},
    [RMSG_GW_QUERY] = {rn_unexpected, ROUTER_D_SKIP},
    [RMSG_GW_ANSWER] = {rn_unexpected, ROUTER_D_SKIP},
    [RMSG_HELLO] = {rn_unexpected, ROUTER_D_SKIP},
};
