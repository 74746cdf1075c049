/* backend.c - FastCGI client side of a worker.
 *
 * Connections are kept when BACKEND_KEEPALIVE allows and capped per server by
 * BACKEND_MAX_CONNS; a request that finds every allowed connection busy waits
 * in a bounded FIFO. A connection carries one request at a time, unless
 * BACKEND_MULTIPLEX is on and the backend answers FCGI_GET_VALUES with
 * FCGI_MPXS_CONNS=1 (Go's net/http/fcgi does; php-fpm does not): then up to
 * BACKEND_MPX_MAX requests share it, told apart by request id.
 *
 * A server that refuses a connection, times out, closes mid-request or sends
 * malformed records BACKEND_MAX_FAILS times in a row is skipped for
 * BACKEND_FAIL_TIMEOUT (nginx's max_fails / fail_timeout); a reply resets the
 * count. A refused request moves to the next server - safe, because nothing
 * of it was written. Once a request is written it is never sent again: a
 * failure then is reported, not retried. */
#include "backend.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/dns.h>

#include "conn.h"
#include "log.h"
#include "metrics.h"
#include "netaddr.h"

#define BACKEND_MPX_MAX 64 /* requests in flight on one multiplexed connection */

struct backend_server {
    struct backend_pool *pool;
    char *name;
    int index;
    struct sockaddr_storage sa;
    socklen_t salen;
    int nconns;
    int fails;                        /* failures in a row, up to BACKEND_MAX_FAILS */
    double down_until;                /* monotonic seconds: skipped until then */
    TAILQ_HEAD(, backend_conn) idle;  /* connected, no request: kept alive */
    TAILQ_HEAD(, backend_conn) spare; /* multiplexed, some requests, room for more */
};

enum backend_list { BC_NONE, BC_IDLE, BC_SPARE };

struct backend_conn {
    TAILQ_ENTRY(backend_conn) entry;     /* in its server's idle or spare list */
    TAILQ_ENTRY(backend_conn) all_entry; /* in the pool's list of all connections */
    struct backend_server *srv;
    struct conn *conn;
    enum backend_list list;
    int connected;
    int mpx;   /* the backend allows several requests on this connection */
    int asked; /* we sent FCGI_GET_VALUES on it: only then is a RESULT believed */
    int nreqs; /* requests in flight */
    struct request *reqs[BACKEND_MPX_MAX + 1]; /* by request id; [0] unused */
};

struct backend_pool {
    struct event_base *base;
    /* Settings copied out of the config, so a pool retired by a reload keeps
     * working after that config is freed. */
    int keepalive, max_conns, queue_size, multiplex;
    int max_fails;
    double fail_timeout;
    size_t max_output;
    char event_name[96]; /* FASTCGI_PREFIX + "EVENT" */
    int retiring;        /* replaced by a reload: freed when its last connection ends */
    struct fcgi_params *static_params; /* owned */
    struct backend_server *servers;
    struct backend_wrr wrr[CONFIG_MAX_BACKENDS]; /* round-robin state, by server index */
    int nservers;
    int nidle; /* idle keepalive connections, all servers */
    TAILQ_HEAD(, request) queue;
    TAILQ_HEAD(, backend_conn) all;
    int nqueued;
    /* Common timeouts of base where possible (backend_tv). */
    struct timeval connect_tv, read_tv, queue_tv;
    double queue_timeout;        /* BACKEND_QUEUE_TIMEOUT, for the log line */
    struct backend_stats *stats; /* the worker's (backend_pool_set_stats), or a dummy */
};

/* Where a pool counts until its owner says where (a pool in a unit test). */
static struct backend_stats backend_nostats;

static void backend_conn_close(struct backend_conn *bc);
static void backend_conn_free(struct backend_conn *bc);
static void backend_dispatch(struct backend_pool *p, struct request *r);
static void backend_finish(struct request *r, enum backend_outcome how);
static void backend_queue_expired(evutil_socket_t fd, short what, void *arg);

/* ---- params ---- */

struct fcgi_params *fcgi_params_new(const struct fcgi_params *base, size_t extra)
{
    size_t len = base ? base->len : 0;
    struct fcgi_params *p = malloc(sizeof(*p) + len + extra);
    if (!p)
        abort(); /* out of memory in a gateway worker: nothing sane to do */
    p->refs = 1;
    p->len = len;
    p->cap = len + extra;
    if (len)
        memcpy(p->data, base->data, len);
    return p;
}

void fcgi_params_add(struct fcgi_params **pp, const char *name, const char *value, size_t vlen)
{
    size_t nlen = strlen(name);
    size_t need = fcgi_nv_size(nlen, vlen);
    struct fcgi_params *p = *pp;
    if (p->len + need > p->cap) { /* doubling: a block built header by header */
        size_t cap = p->cap * 2 > p->len + need ? p->cap * 2 : p->len + need;
        if (!(p = realloc(p, sizeof(*p) + cap)))
            abort();
        p->cap = cap;
    }
    p->len += fcgi_nv_encode(p->data + p->len, name, nlen, value, vlen);
    *pp = p;
}

void fcgi_params_fit(struct fcgi_params **pp)
{
    if ((*pp)->refs > 1 || (*pp)->cap == (*pp)->len)
        return; /* shared: it cannot move */
    struct fcgi_params *p = realloc(*pp, sizeof(**pp) + (*pp)->len);
    if (p) {
        p->cap = p->len;
        *pp = p;
    }
}

struct fcgi_params *fcgi_params_ref(struct fcgi_params *p)
{
    p->refs++;
    return p;
}

void fcgi_params_unref(struct fcgi_params *p)
{
    if (p && --p->refs == 0)
        free(p);
}

/* ---- requests ---- */

/* Freed requests kept for reuse (see REQUEST_FREE_MAX), linked by owner_entry:
 * a free request has no owner. */
/* The CGI parser's sink: a reply's commands kept in r->cmds (see backend.h). */
static void request_cmd_add(struct request *r, const void *p, size_t n)
{
    if (r->cmds_lost)
        return;
    if ((r->cmds == NULL && (r->cmds = evbuffer_new()) == NULL) || evbuffer_add(r->cmds, p, n) < 0)
        r->cmds_lost = 1;
}
static void request_cmd_begin(void *arg, int cmd)
{
    uint8_t b = (uint8_t)('@' + cmd); /* a letter: never the LF that ends a record */
    request_cmd_add(arg, &b, 1);
}
static void request_cmd_data(void *arg, const uint8_t *p, size_t n)
{
    request_cmd_add(arg, p, n);
}
static void request_cmd_end(void *arg, int cut)
{
    uint8_t b[2] = {(uint8_t)(cut != 0), '\n'};
    request_cmd_add(arg, b, 2);
}
static const struct cgi_sink request_cmd_sink = {request_cmd_begin, request_cmd_data,
                                                 request_cmd_end};

int request_cmd_next(const uint8_t **p, const uint8_t *end, int *cmd, const uint8_t **value,
                     size_t *len, int *cut)
{
    const uint8_t *q = *p;
    const uint8_t *lf = q < end ? memchr(q, '\n', (size_t)(end - q)) : NULL;
    if (lf == NULL || lf - q < 2) {
        *p = end;
        return 0;
    }
    *cmd = q[0] - '@';
    *value = q + 1;
    *len = (size_t)(lf - q) - 2;
    *cut = lf[-1] != 0;
    *p = lf + 1;
    return 1;
}

static TAILQ_HEAD(, request) request_free_list = TAILQ_HEAD_INITIALIZER(request_free_list);
static int request_nfree, request_free_max = REQUEST_FREE_MAX;

struct request *request_new(struct backend_pool *pool, void *owner, const struct request_ops *ops,
                            const char *sid, struct fcgi_params *params, enum request_event ev)
{
    struct request *r = TAILQ_FIRST(&request_free_list);
    if (r) {
        TAILQ_REMOVE(&request_free_list, r, owner_entry);
        request_nfree--;
        struct evbuffer *body = r->body, *reply = r->reply;
        memset(r, 0, sizeof(*r));
        r->body = body;
        r->reply = reply;
    } else {
        r = calloc(1, sizeof(*r));
        if (!r || !(r->body = evbuffer_new()) || !(r->reply = evbuffer_new()))
            abort();
    }
    r->pool = pool;
    r->owner = owner;
    r->ops = ops;
    r->params = fcgi_params_ref(params);
    r->event = ev;
    memcpy(r->sid, sid, SID_LEN + 1);
    cgi_parser_init(&r->cgi);
    if (owner != NULL) {
        r->cgi.sink = &request_cmd_sink;
        r->cgi.sink_arg = r;
    }
    return r;
}

static void request_destroy(struct request *r)
{
    if (r->cmds)
        evbuffer_free(r->cmds);
    evbuffer_free(r->body);
    evbuffer_free(r->reply);
    free(r);
}

void request_free(struct request *r)
{
    fcgi_params_unref(r->params);
    r->params = NULL;
    if (r->cmds) { /* rare, and up to CGI_MAX_HEADER: not kept for the next use */
        evbuffer_free(r->cmds);
        r->cmds = NULL;
    }
    if (request_nfree >= request_free_max) {
        request_destroy(r);
        return;
    }
    /* Drained, not freed: the buffers go with the request to its next use. */
    evbuffer_drain(r->body, evbuffer_get_length(r->body));
    evbuffer_drain(r->reply, evbuffer_get_length(r->reply));
    TAILQ_INSERT_HEAD(&request_free_list, r, owner_entry);
    request_nfree++;
}

void request_free_list_drop(void)
{
    struct request *r;
    while ((r = TAILQ_FIRST(&request_free_list)) != NULL) {
        TAILQ_REMOVE(&request_free_list, r, owner_entry);
        request_destroy(r);
    }
    request_nfree = 0;
    request_free_max = 0;
}

/* ---- pool ---- */

/* Fills s->sa from a numeric "1.2.3.4:80", "[::1]:80" or "unix:/path": 0.
 * A name needs DNS: 1, with the host and port copied out. -1: malformed. */
static int backend_parse_addr(struct backend_server *s, char *host, size_t hostlen,
                              const char **port)
{
    return netaddr_parse(s->name, &s->sa, &s->salen, host, hostlen, port);
}

static void backend_use_addrinfo(struct backend_server *s, const struct evutil_addrinfo *ai)
{
    memcpy(&s->sa, ai->ai_addr, ai->ai_addrlen);
    s->salen = (socklen_t)ai->ai_addrlen;
}

static const struct evutil_addrinfo backend_hints = {.ai_family = AF_UNSPEC,
                                                     .ai_socktype = SOCK_STREAM};

/* A timeout as a common timeout of base where libevent has one to give (it
 * returns the same one for the same duration, so reloads do not use them up):
 * every request and connection of a pool waits the same time, so their
 * timers sit in one list instead of the timer heap. The value is what counts
 * (libevent recognises it by its tv_usec), so it can be copied. */
static void backend_tv(struct event_base *base, struct timeval *tv, double seconds)
{
    tv->tv_sec = (time_t)seconds;
    tv->tv_usec = (suseconds_t)((seconds - (double)tv->tv_sec) * 1e6);
    const struct timeval *common = event_base_init_common_timeout(base, tv);
    if (common) /* NULL: libevent's 256 common timeouts used up */
        *tv = *common;
}

/* A pool with its settings and servers, addresses not yet resolved. */
static struct backend_pool *backend_pool_alloc(struct event_base *base, const struct config *cfg,
                                               struct fcgi_params *static_params)
{
    struct backend_pool *p = calloc(1, sizeof(*p));
    if (!p) {
        fcgi_params_unref(static_params);
        return NULL;
    }
    p->base = base;
    p->keepalive = cfg->backend_keepalive;
    p->max_conns = cfg->backend_max_conns;
    p->queue_size = cfg->backend_queue_size;
    p->stats = &backend_nostats;
    p->multiplex = cfg->backend_multiplex;
    p->max_fails = cfg->backend_max_fails;
    p->fail_timeout = cfg->backend_fail_timeout;
    p->max_output = cfg->max_output_size;
    snprintf(p->event_name, sizeof(p->event_name), "%sEVENT", cfg->fastcgi_prefix);
    p->static_params = static_params;
    TAILQ_INIT(&p->queue);
    TAILQ_INIT(&p->all);
    backend_tv(base, &p->connect_tv, cfg->backend_connect_timeout);
    backend_tv(base, &p->read_tv, cfg->backend_read_timeout);
    p->queue_timeout = cfg->backend_queue_timeout;
    backend_tv(base, &p->queue_tv, cfg->backend_queue_timeout);
    /* config_load refuses more (a request keeps a bit per server tried):
     * more here is a bug, refused rather than silently cut to 64. */
    if (cfg->nbackends > CONFIG_MAX_BACKENDS || cfg->nbackends < 0) {
        log_err("backend: %d BACKEND_SERVERs, at most %d are supported", cfg->nbackends,
                CONFIG_MAX_BACKENDS);
        goto fail;
    }
    p->servers = calloc((size_t)cfg->nbackends + 1, sizeof(*p->servers));
    if (!p->servers)
        goto fail;
    p->nservers = cfg->nbackends;
    for (int i = 0; i < p->nservers; i++) {
        struct backend_server *s = &p->servers[i];
        s->pool = p;
        s->index = i;
        p->wrr[i].weight = cfg->backends[i].weight;
        TAILQ_INIT(&s->idle);
        TAILQ_INIT(&s->spare);
        if ((s->name = strdup(cfg->backends[i].addr)) == NULL)
            goto fail;
    }
    return p;
fail:
    backend_pool_free(p);
    return NULL;
}

/* Startup: the loop is not serving anybody yet, so names may be resolved with
 * the blocking resolver. */
struct backend_pool *backend_pool_new(struct event_base *base, const struct config *cfg,
                                      struct fcgi_params *static_params)
{
    struct backend_pool *p = backend_pool_alloc(base, cfg, static_params);
    for (int i = 0; p && i < p->nservers; i++) {
        struct backend_server *s = &p->servers[i];
        char host[256];
        const char *port;
        int rc = backend_parse_addr(s, host, sizeof(host), &port), err = 0;
        if (rc == 1)
            err = netaddr_resolve(host, port, &s->sa, &s->salen);
        if (rc < 0 || err != 0) {
            log_err("backend %s: cannot resolve address%s%s", s->name, err ? ": " : "",
                    err ? evutil_gai_strerror(err) : "");
            backend_pool_free(p);
            p = NULL;
        }
    }
    return p;
}

/* ---- a pool whose names are resolved with evdns (reload) ---- */

struct backend_lookup {
    struct backend_pool_pending *pp;
    int server;
    struct evdns_getaddrinfo_request *req; /* while in flight */
};

struct backend_pool_pending {
    struct backend_pool *pool; /* owned until handed to done */
    struct evdns_base *dns;    /* owned; freed from done_ev, never inside its callback */
    backend_pool_ready_cb done;
    void *arg;
    struct event done_ev; /* the result is delivered from here, always from the loop */
    int pending;          /* lookups whose callback has not run yet */
    int issuing;          /* still starting lookups: do not finish yet */
    int canceled;         /* nobody wants the result: free once the lookups are back */
    char err[320];        /* first failure, naming the server */
    struct backend_lookup lookups[CONFIG_MAX_BACKENDS];
};

static void backend_pending_finish(struct backend_pool_pending *pp)
{
    if (pp->pending == 0 && !pp->issuing)
        event_active(&pp->done_ev, EV_TIMEOUT, 0);
}

static void backend_lookup_cb(int result, struct evutil_addrinfo *ai, void *arg)
{
    struct backend_lookup *l = arg;
    struct backend_pool_pending *pp = l->pp;
    l->req = NULL;
    if (!pp->canceled) {
        struct backend_server *s = &pp->pool->servers[l->server];
        if (result == 0 && ai)
            backend_use_addrinfo(s, ai);
        else if (pp->err[0] == '\0')
            snprintf(pp->err, sizeof(pp->err), "backend %s: cannot resolve address: %s", s->name,
                     evutil_gai_strerror(result ? result : EVUTIL_EAI_NONAME));
    }
    if (ai)
        evutil_freeaddrinfo(ai);
    pp->pending--;
    backend_pending_finish(pp);
}

static void backend_pending_done(evutil_socket_t fd, short what, void *arg)
{
    struct backend_pool_pending *pp = arg;
    (void)fd;
    (void)what;
    if (pp->dns)
        evdns_base_free(pp->dns, 0);
    struct backend_pool *p = pp->pool;
    backend_pool_ready_cb done = pp->done;
    void *done_arg = pp->arg;
    char err[sizeof(pp->err)];
    memcpy(err, pp->err, sizeof(err));
    int canceled = pp->canceled;
    free(pp);
    if (canceled)
        return;
    if (err[0]) {
        log_err("%s", err);
        backend_pool_free(p);
        done(NULL, err, done_arg);
        return;
    }
    done(p, NULL, done_arg);
}

struct backend_pool_pending *backend_pool_new_async(struct event_base *base,
                                                    const struct config *cfg,
                                                    struct fcgi_params *static_params,
                                                    backend_pool_ready_cb done, void *arg)
{
    struct backend_pool_pending *pp = calloc(1, sizeof(*pp));
    if (!pp) {
        fcgi_params_unref(static_params);
        return NULL;
    }
    pp->pool = backend_pool_alloc(base, cfg, static_params);
    if (!pp->pool) {
        free(pp);
        return NULL;
    }
    pp->done = done;
    pp->arg = arg;
    event_assign(&pp->done_ev, base, -1, 0, backend_pending_done, pp);
    pp->issuing = 1;
    for (int i = 0; i < pp->pool->nservers; i++) {
        struct backend_server *s = &pp->pool->servers[i];
        char host[256];
        const char *port;
        int rc = backend_parse_addr(s, host, sizeof(host), &port);
        if (rc < 0) {
            snprintf(pp->err, sizeof(pp->err), "backend %s: malformed address", s->name);
            break;
        }
        if (rc == 0)
            continue; /* numeric or unix: no DNS */
        if (pp->dns == NULL) {
            /* resolv.conf and /etc/hosts are read now, so a reload sees their changes */
            pp->dns = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS
                                               | EVDNS_BASE_DISABLE_WHEN_INACTIVE);
            if (pp->dns == NULL) {
                snprintf(pp->err, sizeof(pp->err), "backend %s: cannot set up DNS", s->name);
                break;
            }
        }
        struct backend_lookup *l = &pp->lookups[i];
        l->pp = pp;
        l->server = i;
        pp->pending++;
        /* The callback may run before this returns (an /etc/hosts entry): then
         * evdns_getaddrinfo returns NULL, and l->req stays NULL. */
        l->req = evdns_getaddrinfo(pp->dns, host, port, &backend_hints, backend_lookup_cb, l);
    }
    pp->issuing = 0;
    backend_pending_finish(pp);
    return pp;
}

void backend_pool_new_cancel(struct backend_pool_pending *pp)
{
    if (!pp || pp->canceled)
        return;
    pp->canceled = 1;
    backend_pool_free(pp->pool);
    pp->pool = NULL;
    /* A canceled lookup still calls back (EVUTIL_EAI_CANCEL), from the loop:
     * pp lives until the last one has, then done_ev frees it. */
    for (int i = 0; i < CONFIG_MAX_BACKENDS; i++)
        if (pp->lookups[i].req)
            evdns_getaddrinfo_cancel(pp->lookups[i].req);
    if (pp->pending == 0) {
        event_del(&pp->done_ev);
        if (pp->dns)
            evdns_base_free(pp->dns, 0);
        free(pp);
    }
}

/* Into the wait queue. A request waits at most BACKEND_QUEUE_TIMEOUT, except
 * a close event (EVENT=2): the backend must learn that the session ended, and
 * nobody waits for its reply, so it waits as long as it takes. */
static void backend_enqueue(struct backend_pool *p, struct request *r)
{
    r->queued = 1;
    TAILQ_INSERT_TAIL(&p->queue, r, queue_entry);
    p->nqueued++;
    gauge_add(&p->stats->queued, 1);
    if (r->event != EVENT_CLOSE) {
        event_assign(&r->queue_ev, p->base, -1, 0, backend_queue_expired, r);
        event_add(&r->queue_ev, &p->queue_tv);
    }
    if (r->owner && r->ops->queued)
        r->ops->queued(r, 1);
}

/* Out of the wait queue, for whatever reason: every way out passes here, so
 * the client's count of queued requests stays exact. */
static void backend_dequeue(struct backend_pool *p, struct request *r)
{
    TAILQ_REMOVE(&p->queue, r, queue_entry);
    p->nqueued--;
    gauge_add(&p->stats->queued, -1);
    r->queued = 0;
    if (r->event != EVENT_CLOSE)
        event_del(&r->queue_ev);
    if (r->owner && r->ops->queued)
        r->ops->queued(r, -1);
}

/* Detaches every request of bc and reports it failed. */
static void backend_conn_fail_all(struct backend_conn *bc, const char *why,
                                  enum backend_outcome how)
{
    for (int id = 1; id <= BACKEND_MPX_MAX && bc->nreqs > 0; id++) {
        struct request *r = bc->reqs[id];
        if (!r)
            continue;
        bc->reqs[id] = NULL;
        bc->nreqs--;
        r->conn = NULL;
        if (why)
            log_err("backend %s: %s (sid %s)", bc->srv->name, why, r->sid);
        backend_finish(r, how);
    }
}

void backend_pool_free(struct backend_pool *p)
{
    if (!p)
        return;
    struct request *r;
    while ((r = TAILQ_FIRST(&p->queue)) != NULL) {
        backend_dequeue(p, r);
        backend_finish(r, BACKEND_FAILED);
    }
    struct backend_conn *bc;
    while ((bc = TAILQ_FIRST(&p->all)) != NULL) {
        backend_conn_fail_all(bc, NULL, BACKEND_FAILED);
        backend_conn_free(bc);
    }
    for (int i = 0; i < p->nservers; i++)
        free(p->servers[i].name);
    free(p->servers);
    fcgi_params_unref(p->static_params);
    free(p);
}

void backend_pool_set_stats(struct backend_pool *p, struct backend_stats *st)
{
    p->stats = st;
}

/* Monotonic nanoseconds, for a request's duration (a vDSO call, no syscall). */
static uint64_t backend_clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int backend_client_share(const struct backend_pool *p)
{
    return p->queue_size / 16 > 1 ? p->queue_size / 16 : 1;
}

void backend_pool_stats(struct backend_pool *p, int *conns, int *idle, int *queued)
{
    int n = 0;
    for (int i = 0; i < p->nservers; i++)
        n += p->servers[i].nconns;
    *conns = n;
    *idle = p->nidle;
    *queued = p->nqueued;
}

static int backend_capacity(const struct backend_conn *bc)
{
    return bc->mpx ? BACKEND_MPX_MAX : 1;
}

/* Whether server s could take one more request now. */
static int backend_server_open(const struct backend_server *s)
{
    return !TAILQ_EMPTY(&s->spare) || !TAILQ_EMPTY(&s->idle) || s->nconns < s->pool->max_conns;
}

/* Monotonic seconds: a down mark must not move with the wall clock. */
static double backend_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The server failed a request or a connection attempt. BACKEND_MAX_FAILS in
 * a row mark it down for BACKEND_FAIL_TIMEOUT. As in nginx the count is not
 * cleared by the mark: when the first request after the timeout fails too,
 * the server is marked down again at once. */
static void backend_server_failed(struct backend_server *s)
{
    struct backend_pool *p = s->pool;
    if (p->max_fails == 0)
        return;
    if (s->fails < p->max_fails)
        s->fails++;
    if (s->fails < p->max_fails)
        return;
    double now = backend_now();
    if (s->down_until <= now)
        log_err("backend %s: %d failure%s in a row, not used for %gs (BACKEND_FAIL_TIMEOUT)",
                s->name, s->fails, s->fails == 1 ? "" : "s", p->fail_timeout);
    s->down_until = now + p->fail_timeout;
}

/* A well-formed END_REQUEST: the server works, whatever its mark said. */
static void backend_server_ok(struct backend_server *s)
{
    s->fails = 0;
    s->down_until = 0;
}

/* The servers r may go to now, one bit each. Servers r already tried are out.
 * Of the others, those not marked down; only when every one is marked down,
 * those (the mark is a hint: better a try than a certain failure). *at_cap
 * says a server r could use is at BACKEND_MAX_CONNS with nothing idle, so r
 * may wait for it: a healthy server that is busy is waited for rather than
 * sending r to one marked down. backend_pick and backend_can_take both use
 * this, so a request the queue hands out is one dispatch can place. */
static uint64_t backend_eligible(struct backend_pool *p, const struct request *r, int *at_cap)
{
    double now = backend_now();
    uint64_t open[2] = {0, 0}; /* [1]: servers up */
    int cap[2] = {0, 0}, any_up = 0;
    for (int i = 0; i < p->nservers; i++) {
        const struct backend_server *s = &p->servers[i];
        uint64_t bit = 1ULL << i;
        if (r->tried & bit)
            continue;
        int up = s->down_until <= now;
        any_up |= up;
        if (backend_server_open(s))
            open[up] |= bit;
        else
            cap[up] = 1;
    }
    *at_cap = cap[any_up];
    return open[any_up];
}

int backend_wrr_pick(struct backend_wrr *w, int n, uint64_t eligible)
{
    int best = -1, total = 0;
    for (int i = 0; i < n; i++) {
        if (!(eligible & (1ULL << i)))
            continue;
        w[i].current += w[i].weight;
        total += w[i].weight;
        if (best < 0 || w[i].current > w[best].current)
            best = i;
    }
    if (best >= 0)
        w[best].current -= total;
    return best;
}

static struct backend_server *backend_pick(struct backend_pool *p, struct request *r, int *at_cap)
{
    int i = backend_wrr_pick(p->wrr, p->nservers, backend_eligible(p, r, at_cap));
    return i < 0 ? NULL : &p->servers[i];
}

static void backend_write_request(struct backend_conn *bc, struct request *r, uint16_t id)
{
    struct backend_pool *p = bc->srv->pool;
    struct evbuffer *out = conn_output(bc->conn);
    uint8_t rec[16];
    char num[32];

    fcgi_begin_request_encode(rec, id, p->keepalive > 0 || p->multiplex);
    evbuffer_add(out, rec, 16);

    /* PARAMS: the worker's static params, the client's, then this request's.
     * Usually they fit one record and go straight into the output; a larger
     * stream (many handshake headers) is split into records through a copy. */
    size_t blen = evbuffer_get_length(r->body);
    uint8_t tail[192];
    size_t tlen = 0;
    num[0] = (char)('0' + r->event);
    tlen += fcgi_nv_encode(tail, p->event_name, strlen(p->event_name), num, 1);
    int nl = snprintf(num, sizeof(num), "%zu", blen);
    tlen += fcgi_nv_encode(tail + tlen, "CONTENT_LENGTH", 14, num, (size_t)nl);
    size_t slen = p->static_params ? p->static_params->len : 0;
    size_t plen = slen + r->params->len + tlen;
    if (plen <= FCGI_MAX_CONTENT) {
        fcgi_header_encode(rec, FCGI_PARAMS, id, (uint16_t)plen, 0);
        evbuffer_add(out, rec, FCGI_HEADER_LEN);
        if (slen)
            evbuffer_add(out, p->static_params->data, slen);
        evbuffer_add(out, r->params->data, r->params->len);
        evbuffer_add(out, tail, tlen);
    } else {
        struct evbuffer *params = evbuffer_new();
        if (slen)
            evbuffer_add(params, p->static_params->data, slen);
        evbuffer_add(params, r->params->data, r->params->len);
        evbuffer_add(params, tail, tlen);
        while ((plen = evbuffer_get_length(params)) > 0) {
            size_t chunk = plen > FCGI_MAX_CONTENT ? FCGI_MAX_CONTENT : plen;
            fcgi_header_encode(rec, FCGI_PARAMS, id, (uint16_t)chunk, 0);
            evbuffer_add(out, rec, FCGI_HEADER_LEN);
            evbuffer_remove_buffer(params, out, chunk);
        }
        evbuffer_free(params);
    }
    fcgi_header_encode(rec, FCGI_PARAMS, id, 0, 0);
    evbuffer_add(out, rec, FCGI_HEADER_LEN);

    /* STDIN: the message moves into the output buffer, record by record. */
    while ((blen = evbuffer_get_length(r->body)) > 0) {
        size_t chunk = blen > FCGI_MAX_CONTENT ? FCGI_MAX_CONTENT : blen;
        fcgi_header_encode(rec, FCGI_STDIN, id, (uint16_t)chunk, 0);
        evbuffer_add(out, rec, FCGI_HEADER_LEN);
        evbuffer_remove_buffer(r->body, out, chunk);
    }
    fcgi_header_encode(rec, FCGI_STDIN, id, 0, 0);
    evbuffer_add(out, rec, FCGI_HEADER_LEN);
    conn_set_timeouts(bc->conn, &p->read_tv, &p->read_tv);
}

/* Puts bc on the list that matches its load: idle (no request), spare
 * (multiplexed with room), or none (full, or connecting). */
static void backend_conn_place(struct backend_conn *bc)
{
    struct backend_server *s = bc->srv;
    enum backend_list want = BC_NONE;
    if (bc->connected && bc->nreqs == 0)
        want = BC_IDLE;
    else if (bc->connected && bc->mpx && bc->nreqs < backend_capacity(bc))
        want = BC_SPARE;
    if (want == bc->list)
        return;
    if (bc->list == BC_IDLE) {
        TAILQ_REMOVE(&s->idle, bc, entry);
        s->pool->nidle--;
    } else if (bc->list == BC_SPARE) {
        TAILQ_REMOVE(&s->spare, bc, entry);
    }
    bc->list = want;
    if (want == BC_IDLE) {
        TAILQ_INSERT_HEAD(&s->idle, bc, entry); /* LIFO: warm connections first */
        s->pool->nidle++;
    } else if (want == BC_SPARE) {
        TAILQ_INSERT_TAIL(&s->spare, bc, entry);
    }
}

static void backend_conn_free(struct backend_conn *bc)
{
    struct backend_server *s = bc->srv;
    bc->nreqs = 0;
    bc->connected = 0;
    backend_conn_place(bc); /* off every list */
    s->nconns--;
    TAILQ_REMOVE(&s->pool->all, bc, all_entry);
    conn_free(bc->conn);
    free(bc);
}

/* Whether backend_pick would place r now (no side effects, unlike
 * backend_pick which advances the round robin). */
static int backend_can_take(struct backend_pool *p, struct request *r)
{
    int at_cap;
    return backend_eligible(p, r, &at_cap) != 0;
}

/* A connection slot opened up: give it to the oldest waiting requests. */
static void backend_drain_queue(struct backend_pool *p)
{
    struct request *r;
    while ((r = TAILQ_FIRST(&p->queue)) != NULL && backend_can_take(p, r)) {
        backend_dequeue(p, r);
        backend_dispatch(p, r);
    }
}

/* A retired pool goes away with its last connection. */
static void backend_pool_maybe_free(struct backend_pool *p)
{
    if (p->retiring && TAILQ_EMPTY(&p->all) && TAILQ_EMPTY(&p->queue))
        backend_pool_free(p);
}

static void backend_conn_close(struct backend_conn *bc)
{
    struct backend_pool *p = bc->srv->pool;
    backend_conn_free(bc);
    backend_drain_queue(p);
    backend_pool_maybe_free(p);
}

void backend_pool_retire(struct backend_pool *old, struct backend_pool *fresh)
{
    struct request *r;
    /* Waiting requests were never written: they move to the new servers. */
    while ((r = TAILQ_FIRST(&old->queue)) != NULL) {
        backend_dequeue(old, r); /* its deadline starts again on fresh */
        r->tried = 0;
        r->pool = fresh;
        backend_dispatch(fresh, r);
    }
    for (int i = 0; i < old->nservers; i++) {
        struct backend_conn *bc;
        while ((bc = TAILQ_FIRST(&old->servers[i].idle)) != NULL)
            backend_conn_free(bc);
    }
    old->retiring = 1;
    backend_pool_maybe_free(old);
}

/* Everything on bc failed (timeout, EOF, protocol error): log, report every
 * request it carried, close it. `counts`: the server is to blame (it counts
 * towards BACKEND_MAX_FAILS); not so for an idle keepalive connection the
 * server closed, or a reply over our own size limit. */
static void backend_fail(struct backend_conn *bc, const char *why, int counts,
                         enum backend_outcome how)
{
    if (bc->nreqs == 0)
        log_info("backend %s: %s (idle connection)", bc->srv->name, why);
    if (counts)
        backend_server_failed(bc->srv);
    /* Off every list first: a request posted while these failures are
     * reported (a client reading on) must not land on this connection. */
    bc->connected = 0;
    backend_conn_place(bc);
    backend_conn_fail_all(bc, why, how);
    backend_conn_close(bc);
}

/* A request of bc ended: bc goes back to its list, or is closed when it is
 * not kept; then waiting requests get their chance. Returns 0 if bc is gone. */
static int backend_conn_settle(struct backend_conn *bc)
{
    struct backend_pool *p = bc->srv->pool;
    if (bc->nreqs == 0) {
        if (p->keepalive == 0 || p->nidle >= p->keepalive || p->retiring) {
            backend_conn_close(bc);
            return 0;
        }
        /* An idle connection may be closed by the server at any time; no timeout. */
        conn_set_timeouts(bc->conn, NULL, NULL);
    }
    backend_conn_place(bc);
    backend_drain_queue(p);
    return 1;
}

/* GET_VALUES_RESULT: does the backend multiplex? Only an answer to our own
 * question counts: a backend that volunteers FCGI_MPXS_CONNS=1 while the pool
 * runs one request per connection (BACKEND_MULTIPLEX = 0) may still close the
 * connection after each request (no KEEP_CONN was sent), and every request
 * stacked onto it would then fail. */
static void backend_values(struct backend_conn *bc, const uint8_t *d, size_t n)
{
    if (!bc->asked || !bc->srv->pool->multiplex) {
        log_debug("backend %s: unsolicited FCGI_GET_VALUES_RESULT ignored", bc->srv->name);
        return;
    }
    while (n > 0) {
        const uint8_t *name, *value;
        size_t nlen, vlen;
        long used = fcgi_nv_decode(d, n, &name, &nlen, &value, &vlen);
        if (used <= 0)
            return;
        if (nlen == 15 && memcmp(name, "FCGI_MPXS_CONNS", 15) == 0 && vlen == 1 && value[0] == '1'
            && !bc->mpx) {
            bc->mpx = 1;
            log_debug("backend %s: multiplexing requests on a connection", bc->srv->name);
            backend_conn_place(bc);
            backend_drain_queue(bc->srv->pool);
        }
        d += used;
        n -= (size_t)used;
    }
}

static void backend_stderr(struct backend_conn *bc, struct request *r, const uint8_t *p, size_t n)
{
    /* One log line per record, trimmed and without control characters. */
    char line[1024];
    size_t j = 0;
    for (size_t i = 0; i < n && j < sizeof(line) - 1; i++)
        line[j++] = (p[i] < 0x20 || p[i] == 0x7f) ? ' ' : (char)p[i];
    while (j > 0 && line[j - 1] == ' ')
        j--;
    line[j] = '\0';
    if (j > 0)
        log_err("backend %s: stderr (sid %s): %s", bc->srv->name, r->sid, line);
}

/* Consumes whole records from the connection's input. */
static void backend_readcb(struct conn *conn, void *arg)
{
    struct backend_conn *bc = arg;
    struct evbuffer *in = conn_input(conn);
    struct backend_pool *p = bc->srv->pool;
    for (;;) {
        uint8_t hb[FCGI_HEADER_LEN];
        struct fcgi_header h;
        if (evbuffer_copyout(in, hb, sizeof(hb)) < (ev_ssize_t)sizeof(hb))
            return;
        if (fcgi_header_decode(hb, sizeof(hb), &h) != FCGI_OK) {
            backend_fail(bc, "malformed FastCGI record (bad version)", 1, BACKEND_FAILED);
            return;
        }
        size_t clen = h.content_length, total = FCGI_HEADER_LEN + clen + h.padding_length;
        if (evbuffer_get_length(in) < total)
            return;              /* bounded: a record is at most 8 + 65535 + 255 bytes */
        if (h.request_id == 0) { /* management records */
            evbuffer_drain(in, FCGI_HEADER_LEN);
            if (h.type == FCGI_GET_VALUES_RESULT && clen > 0)
                backend_values(bc, evbuffer_pullup(in, (ev_ssize_t)clen), clen);
            evbuffer_drain(in, clen + h.padding_length);
            continue;
        }
        struct request *r = h.request_id <= BACKEND_MPX_MAX ? bc->reqs[h.request_id] : NULL;
        if (r == NULL) {
            backend_fail(bc,
                         bc->nreqs ? "FastCGI record for an unknown request id"
                                   : "FastCGI record with no request in flight",
                         1, BACKEND_FAILED);
            return;
        }
        evbuffer_drain(in, FCGI_HEADER_LEN);
        switch (h.type) {
        case FCGI_STDOUT: {
            size_t body = clen;
            if (!r->cgi.done && clen > 0) {
                const uint8_t *d = evbuffer_pullup(in, (ev_ssize_t)clen);
                long used = cgi_parser_feed(&r->cgi, d, clen);
                if (used < 0) {
                    backend_fail(bc, "malformed CGI response header", 1, BACKEND_FAILED);
                    return;
                }
                evbuffer_drain(in, (size_t)used);
                body = clen - (size_t)used;
            }
            size_t have = evbuffer_get_length(r->reply), keep = body;
            if (r->cgi.done && r->cgi.content_length >= 0) {
                /* Content-Length wins: bytes past it are not part of the reply. */
                size_t want = (size_t)r->cgi.content_length;
                keep = have >= want ? 0 : (want - have < body ? want - have : body);
            }
            if (have + keep > p->max_output) {
                backend_fail(bc, "reply larger than MAX_OUTPUT_SIZE", 0, BACKEND_FAILED);
                return;
            }
            evbuffer_remove_buffer(in, r->reply, keep);
            evbuffer_drain(in, body - keep);
            break;
        }
        case FCGI_STDERR:
            if (clen > 0)
                backend_stderr(bc, r, evbuffer_pullup(in, (ev_ssize_t)clen), clen);
            evbuffer_drain(in, clen);
            break;
        case FCGI_END_REQUEST: {
            uint32_t app;
            uint8_t ps;
            const uint8_t *d = evbuffer_pullup(in, (ev_ssize_t)clen);
            if (fcgi_end_request_decode(d, clen, &app, &ps) != FCGI_OK) {
                backend_fail(bc, "malformed END_REQUEST record", 1, BACKEND_FAILED);
                return;
            }
            evbuffer_drain(in, clen + h.padding_length);
            bc->reqs[h.request_id] = NULL;
            bc->nreqs--;
            r->conn = NULL;
            backend_server_ok(bc->srv);
            if (ps != 0) {
                log_err("backend %s: request refused, protocol status %u (sid %s)", bc->srv->name,
                        ps, r->sid);
                backend_finish(r, BACKEND_REFUSED);
            } else if (!r->cgi.done && evbuffer_get_length(r->reply) == 0 && r->cgi.total > 0) {
                log_err("backend %s: reply header not terminated (sid %s)", bc->srv->name, r->sid);
                backend_finish(r, BACKEND_FAILED);
            } else {
                backend_finish(r, BACKEND_OK);
            }
            /* Bytes after the last END_REQUEST of a one-at-a-time connection
             * mean a confused backend: do not reuse it. */
            if (!bc->mpx && !p->multiplex && evbuffer_get_length(in) > 0) {
                backend_fail(bc, "data after END_REQUEST", 1, BACKEND_FAILED);
                return;
            }
            if (!backend_conn_settle(bc))
                return;
            continue;
        }
        default:
            evbuffer_drain(in, clen + h.padding_length);
            backend_fail(bc, "unexpected FastCGI record type", 1, BACKEND_FAILED);
            return;
        }
        evbuffer_drain(in, h.padding_length);
    }
}

/* Asks the backend whether it multiplexes (BACKEND_MULTIPLEX = 1). */
static void backend_ask_values(struct backend_conn *bc)
{
    uint8_t rec[FCGI_HEADER_LEN + 32];
    size_t n = fcgi_nv_encode(rec + FCGI_HEADER_LEN, "FCGI_MPXS_CONNS", 15, "", 0);
    fcgi_header_encode(rec, FCGI_GET_VALUES, 0, (uint16_t)n, 0);
    evbuffer_add(conn_output(bc->conn), rec, FCGI_HEADER_LEN + n);
    bc->asked = 1;
}

static void backend_eventcb(struct conn *conn, short what, void *arg)
{
    struct backend_conn *bc = arg;
    struct backend_pool *p = bc->srv->pool;
    (void)conn;
    if (what & CONN_CONNECTED) {
        /* Accepting a connection is not a success: a server that accepts and
         * never answers must still reach BACKEND_MAX_FAILS. */
        bc->connected = 1;
        if (p->multiplex)
            backend_ask_values(bc);
        for (int id = 1; id <= BACKEND_MPX_MAX; id++)
            if (bc->reqs[id])
                backend_write_request(bc, bc->reqs[id], (uint16_t)id);
        conn_read(bc->conn, 1);
        backend_conn_place(bc);
        return;
    }
    if (!bc->connected && bc->nreqs > 0) {
        /* Nothing was written: count the failure and try another server. */
        struct request *r = bc->reqs[1];
        int err = EVUTIL_SOCKET_ERROR();
        log_err("backend %s: connect %s (sid %s)", bc->srv->name,
                (what & CONN_TIMEOUT) ? "timed out" : evutil_socket_error_to_string(err), r->sid);
        backend_server_failed(bc->srv);
        bc->reqs[1] = NULL;
        bc->nreqs = 0;
        r->conn = NULL;
        backend_conn_free(bc);
        backend_dispatch(p, r);
        backend_drain_queue(p);
        backend_pool_maybe_free(p);
        return;
    }
    if (what & CONN_TIMEOUT)
        backend_fail(bc, (what & CONN_READING) ? "read timeout" : "write timeout", 1,
                     BACKEND_TIMEOUT);
    else if (what & CONN_EOF)
        backend_fail(bc, bc->nreqs ? "closed the connection before END_REQUEST" : "closed",
                     bc->nreqs > 0, BACKEND_FAILED);
    else
        backend_fail(bc, evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()), bc->nreqs > 0,
                     BACKEND_FAILED);
}

static struct backend_conn *backend_connect(struct backend_server *s)
{
    struct backend_pool *p = s->pool;
    struct backend_conn *bc = calloc(1, sizeof(*bc));
    if (!bc)
        return NULL;
    bc->srv = s;
    bc->conn = conn_new(p->base, -1, NULL);
    if (!bc->conn) {
        free(bc);
        return NULL;
    }
    s->nconns++;
    TAILQ_INSERT_TAIL(&p->all, bc, all_entry);
    conn_setcb(bc->conn, backend_readcb, NULL, backend_eventcb, bc);
    conn_set_timeouts(bc->conn, &p->connect_tv, &p->connect_tv);
    return bc;
}

/* Gives r the first free request id of bc; writes it now if bc is connected. */
static void backend_attach(struct backend_conn *bc, struct request *r)
{
    int id = 1;
    while (id < BACKEND_MPX_MAX && bc->reqs[id])
        id++;
    bc->reqs[id] = r;
    bc->nreqs++;
    r->conn = bc;
    if (bc->connected) {
        backend_write_request(bc, r, (uint16_t)id);
        backend_conn_place(bc);
    }
}

static void backend_dispatch(struct backend_pool *p, struct request *r)
{
    int at_cap;
    struct backend_server *s = backend_pick(p, r, &at_cap);
    if (s == NULL) {
        if (at_cap) {
            if (p->nqueued >= p->queue_size) {
                log_err("backend: queue full (%d waiting), request dropped (sid %s)", p->nqueued,
                        r->sid);
                backend_finish(r, BACKEND_QUEUE_FULL);
                return;
            }
            backend_enqueue(p, r);
            return;
        }
        log_err("backend: no server could take the request (sid %s)", r->sid);
        backend_finish(r, BACKEND_UNAVAILABLE);
        return;
    }
    r->tried |= 1ULL << s->index;
    struct backend_conn *bc = TAILQ_FIRST(&s->spare);
    if (bc == NULL)
        bc = TAILQ_FIRST(&s->idle);
    if (bc) {
        backend_attach(bc, r);
        return;
    }
    bc = backend_connect(s);
    if (bc == NULL) {
        log_err("backend %s: out of memory (sid %s)", s->name, r->sid);
        backend_finish(r, BACKEND_FAILED);
        return;
    }
    backend_attach(bc, r);
    if (conn_connect(bc->conn, (struct sockaddr *)&s->sa, s->salen) < 0) {
        /* Immediate failure (e.g. unix socket missing): same as a refusal. */
        log_err("backend %s: connect failed: %s (sid %s)", s->name,
                evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()), r->sid);
        backend_server_failed(s);
        bc->reqs[1] = NULL;
        bc->nreqs = 0;
        r->conn = NULL;
        backend_conn_free(bc);
        backend_dispatch(p, r);
    }
}

void backend_post(struct backend_pool *p, struct request *r)
{
    r->posted_ns = backend_clock_ns();
    if (p->nservers == 0) {
        backend_finish(r, BACKEND_UNAVAILABLE);
        return;
    }
    backend_dispatch(p, r);
}

/* Every request ends here, once: counted by outcome, its time observed. */
static void backend_finish(struct request *r, enum backend_outcome how)
{
    r->done = 1;
    r->failed = how != BACKEND_OK;
    if (how == BACKEND_OK) {
        if (r->cgi.status < 200 || r->cgi.status > 299) {
            log_info("backend: reply status %d, body not delivered (sid %s)", r->cgi.status,
                     r->sid);
            evbuffer_drain(r->reply, evbuffer_get_length(r->reply));
            r->failed = 1;
            how = BACKEND_STATUS;
        } else if (r->cgi.content_length >= 0) {
            r->explicit_empty = 1; /* "Content-Length: 0" is a reply, an empty one */
        }
    }
    struct backend_stats *st = r->pool->stats;
    uint64_t ns = backend_clock_ns() - r->posted_ns;
    counter_add(&st->outcome[how], 1);
    counter_add(&st->duration[metrics_bucket(stats_duration_bounds, STATS_DURATION_BUCKETS,
                                             (double)ns / 1e9)],
                1);
    counter_add(&st->duration_ns, ns);
    if (r->owner)
        r->ops->done(r);
    else
        request_free(r);
}

/* A queued request waited BACKEND_QUEUE_TIMEOUT: every connection it could use
 * stayed busy (a backend that hangs, a burst far over BACKEND_MAX_CONNS). It
 * fails through the normal path, so its client stays connected and its later
 * replies keep their order. */
static void backend_queue_expired(evutil_socket_t fd, short what, void *arg)
{
    struct request *r = arg;
    struct backend_pool *p = r->pool;
    (void)fd;
    (void)what;
    log_err("backend: no connection free after %gs in the queue (BACKEND_QUEUE_TIMEOUT), "
            "request failed (sid %s)",
            p->queue_timeout, r->sid);
    backend_dequeue(p, r);
    backend_finish(r, BACKEND_QUEUE_TIMEOUT);
    backend_pool_maybe_free(p);
}

void backend_detach(struct request *r)
{
    if (r->queued) {
        /* Nobody waits for it and nothing was sent: drop it. */
        backend_dequeue(r->pool, r);
        r->owner = NULL;
        request_free(r);
        return;
    }
    r->owner = NULL;
}
