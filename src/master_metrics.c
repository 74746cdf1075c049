/* master_metrics.c - /metrics and /healthz of the gateway master (see
 * master_metrics.h), on libevent's evhttp.
 *
 * Every answer closes its connection: the master forks workers at any time
 * (a respawn), and a worker must not inherit a scraper's connection, which
 * it would hold open after the master closed it. The listening socket the
 * worker closes itself (master_metrics_fd). */
#include "master_metrics.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "log.h"
#include "metrics.h"
#include "netaddr.h"

struct master_metrics {
    struct evhttp *http;
    int fd;
    const struct config *cfg; /* the master's, reloaded in place */
    struct shm_block *shm;
};

static const char *const master_metrics_protos[STATS_PROTO_N] = {
    [STATS_PROTO_LENGTH] = "length",
    [STATS_PROTO_WEBSOCKET] = "websocket",
    [STATS_PROTO_SCRIPT] = "script",
};

static const char *const master_metrics_closes[STATS_CLOSE_N] = {
    [STATS_CLOSE_CLIENT] = "client",
    [STATS_CLOSE_IDLE] = "idle",
    [STATS_CLOSE_HANDSHAKE_TIMEOUT] = "handshake_timeout",
    [STATS_CLOSE_SLOW_CONSUMER] = "slow_consumer",
    [STATS_CLOSE_KICKED] = "kicked",
    [STATS_CLOSE_BACKEND] = "backend",
    [STATS_CLOSE_SCRIPT] = "script",
    [STATS_CLOSE_PROTOCOL] = "protocol",
    [STATS_CLOSE_STATIC] = "static",
    [STATS_CLOSE_STOPPING] = "stopping",
    [STATS_CLOSE_ERROR] = "error",
};

static const char *const master_metrics_outcomes[BACKEND_OUTCOME_N] = {
    [BACKEND_OK] = "ok",
    [BACKEND_STATUS] = "status",
    [BACKEND_FAILED] = "failed",
    [BACKEND_TIMEOUT] = "timeout",
    [BACKEND_REFUSED] = "refused",
    [BACKEND_QUEUE_FULL] = "queue_full",
    [BACKEND_QUEUE_TIMEOUT] = "queue_timeout",
    [BACKEND_UNAVAILABLE] = "unavailable",
};

/* A counter or gauge at offset `off` of struct worker_stats, summed over the
 * workers. Offsets keep one loop for every field. */
#define STAT_OFF(field) offsetof(struct worker_stats, field)

static uint64_t master_metrics_sum(const struct shm_block *shm, size_t off)
{
    uint64_t v = 0;
    for (int i = 0; i < shm->nworkers; i++)
        v += counter_get((const counter_t *)((const char *)&shm->workers[i].stats + off));
    return v;
}

static int64_t master_metrics_gsum(const struct shm_block *shm, size_t off)
{
    int64_t v = 0;
    for (int i = 0; i < shm->nworkers; i++)
        v += gauge_get((const gauge_t *)((const char *)&shm->workers[i].stats + off));
    return v;
}

int master_metrics_alive(const struct shm_block *shm)
{
    struct shm_block *b = (struct shm_block *)shm;
    int n = 0;
    for (int i = 0; i < b->nworkers; i++)
        n += atomic_load(&b->workers[i].pid) != 0 && atomic_load(&b->workers[i].ready) != 0;
    return n;
}

/* One counter without labels, with its header. */
static void master_metrics_counter(struct evbuffer *out, const struct shm_block *shm,
                                   const char *name, const char *help, size_t off)
{
    metrics_header(out, name, "counter", help);
    metrics_u64(out, name, NULL, NULL, master_metrics_sum(shm, off));
}

static void master_metrics_gauge(struct evbuffer *out, const struct shm_block *shm,
                                 const char *name, const char *help, size_t off)
{
    metrics_header(out, name, "gauge", help);
    metrics_i64(out, name, NULL, NULL, master_metrics_gsum(shm, off));
}

void master_metrics_write(const struct shm_block *shm, const struct config *cfg,
                          struct evbuffer *out)
{
    const char *n;

    n = "fooking_workers";
    metrics_header(out, n, "gauge", "Worker processes configured (WORKER_NUM).");
    metrics_i64(out, n, NULL, NULL, shm->nworkers);
    n = "fooking_workers_alive";
    metrics_header(out, n, "gauge", "Worker processes running.");
    metrics_i64(out, n, NULL, NULL, master_metrics_alive(shm));

    n = "fooking_clients";
    metrics_header(out, n, "gauge", "Clients connected, by protocol.");
    for (int p = 0; p < STATS_PROTO_N; p++)
        metrics_i64(out, n, "protocol", master_metrics_protos[p],
                    master_metrics_gsum(shm, STAT_OFF(clients[p])));
    master_metrics_counter(out, shm, "fooking_client_connections_accepted_total",
                           "Client connections accepted.", STAT_OFF(accepted));
    n = "fooking_client_connections_refused_total";
    metrics_header(out, n, "counter",
                   "Client connections refused at accept (MAX_CLIENT_NUM, MAX_CONN_PER_IP).");
    metrics_u64(out, n, "reason", "max_clients",
                master_metrics_sum(shm, STAT_OFF(refused_max_clients)));
    metrics_u64(out, n, "reason", "max_conn_per_ip",
                master_metrics_sum(shm, STAT_OFF(refused_max_per_ip)));
    n = "fooking_client_closed_total";
    metrics_header(out, n, "counter", "Client connections closed, by reason.");
    for (int r = 0; r < STATS_CLOSE_N; r++)
        metrics_u64(out, n, "reason", master_metrics_closes[r],
                    master_metrics_sum(shm, STAT_OFF(closed[r])));
    master_metrics_counter(out, shm, "fooking_client_messages_received_total",
                           "Messages received from clients.", STAT_OFF(messages_in));
    master_metrics_counter(out, shm, "fooking_client_messages_sent_total",
                           "Messages sent to clients (replies and pushes).",
                           STAT_OFF(messages_out));
    master_metrics_counter(out, shm, "fooking_client_received_bytes_total",
                           "Bytes read from client sockets (TLS: decrypted).", STAT_OFF(bytes_in));
    master_metrics_counter(out, shm, "fooking_client_sent_bytes_total",
                           "Bytes written to client sockets (TLS: before encryption).",
                           STAT_OFF(bytes_out));
    master_metrics_counter(out, shm, "fooking_client_slow_consumers_total",
                           "Clients cut off for output over MAX_OUTPUT_SIZE.",
                           STAT_OFF(slow_consumers));

    n = "fooking_backend_requests_total";
    metrics_header(out, n, "counter", "FastCGI requests finished, by outcome.");
    for (int o = 0; o < BACKEND_OUTCOME_N; o++)
        metrics_u64(out, n, "outcome", master_metrics_outcomes[o],
                    master_metrics_sum(shm, STAT_OFF(backend.outcome[o])));
    uint64_t buckets[STATS_DURATION_BUCKETS + 1];
    for (int b = 0; b <= STATS_DURATION_BUCKETS; b++)
        buckets[b] = master_metrics_sum(shm, STAT_OFF(backend.duration[b]));
    n = "fooking_backend_request_duration_seconds";
    metrics_header(out, n, "histogram",
                   "Time from a FastCGI request's posting to its end (every outcome).");
    metrics_histogram(out, n, stats_duration_bounds, STATS_DURATION_BUCKETS, buckets,
                      (double)master_metrics_sum(shm, STAT_OFF(backend.duration_ns)) / 1e9);
    master_metrics_gauge(out, shm, "fooking_backend_queue_length",
                         "FastCGI requests waiting for a free backend connection.",
                         STAT_OFF(backend.queued));

    if (cfg->router_host) {
        master_metrics_gauge(out, shm, "fooking_router_links_up",
                             "Workers whose link to the router (ROUTER_HOST) is up.",
                             STAT_OFF(router_link));
        master_metrics_counter(out, shm, "fooking_router_link_reconnects_total",
                               "Router links up again after being lost.",
                               STAT_OFF(router_reconnects));
    }
    if (cfg->bus) {
        n = "fooking_bus_connected";
        metrics_header(out, n, "gauge", "Bus (BUS) connections up, of the workers, by kind.");
        metrics_i64(out, n, "connection", "subscribe",
                    master_metrics_gsum(shm, STAT_OFF(bus.connected[0])));
        metrics_i64(out, n, "connection", "command",
                    master_metrics_gsum(shm, STAT_OFF(bus.connected[1])));
        master_metrics_counter(out, shm, "fooking_bus_reconnects_total",
                               "Bus connections up again after being lost.",
                               STAT_OFF(bus.reconnects));
        master_metrics_counter(
            out, shm, "fooking_bus_publishes_dropped_total",
            "Publishes and other bus commands dropped (bus down, or too many replies pending).",
            STAT_OFF(bus.dropped));
    }
}

static void master_metrics_reply(struct evhttp_request *req, int code, const char *reason,
                                 const char *type, struct evbuffer *body)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", type);
    evhttp_add_header(h, "Connection", "close");
    evhttp_send_reply(req, code, reason, body);
}

static void master_metrics_serve(struct evhttp_request *req, void *arg)
{
    struct master_metrics *m = arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    struct evbuffer *body = evbuffer_new();
    if (!body) {
        evhttp_send_error(req, HTTP_INTERNAL, NULL);
        return;
    }
    if (!path)
        path = "";
    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET
        && evhttp_request_get_command(req) != EVHTTP_REQ_HEAD) {
        evbuffer_add_printf(body, "only GET\n");
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
        master_metrics_reply(req, 405, "Method Not Allowed", "text/plain; charset=utf-8", body);
    } else if (strcmp(path, "/metrics") == 0) {
        master_metrics_write(m->shm, m->cfg, body);
        master_metrics_reply(req, HTTP_OK, "OK", METRICS_CONTENT_TYPE, body);
    } else if (strcmp(path, "/healthz") == 0) {
        int alive = master_metrics_alive(m->shm), all = m->shm->nworkers;
        evbuffer_add_printf(body, "%s: %d of %d workers alive\n", alive == all ? "ok" : "degraded",
                            alive, all);
        master_metrics_reply(req, alive == all ? HTTP_OK : 503,
                             alive == all ? "OK" : "Service Unavailable",
                             "text/plain; charset=utf-8", body);
    } else {
        evbuffer_add_printf(body, "not found: try /metrics or /healthz\n");
        master_metrics_reply(req, HTTP_NOTFOUND, "Not Found", "text/plain; charset=utf-8", body);
    }
    evbuffer_free(body);
}

struct master_metrics *master_metrics_new(struct event_base *base, const struct config *cfg,
                                          struct shm_block *shm)
{
    struct master_metrics *m = calloc(1, sizeof(*m));
    if (!m || !(m->http = evhttp_new(base))) {
        log_err("metrics: out of memory");
        goto fail;
    }
    m->cfg = cfg;
    m->shm = shm;
    /* A scrape is a small GET: nothing big to read, nothing slow to wait for. */
    evhttp_set_timeout(m->http, 10);
    evhttp_set_max_headers_size(m->http, 16384);
    evhttp_set_max_body_size(m->http, 4096);
    evhttp_set_allowed_methods(m->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST
                                            | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE);
    evhttp_set_gencb(m->http, master_metrics_serve, m);
    /* SO_REUSEPORT: the master a binary upgrade starts binds the port while
     * this one still serves it (both answer until this one is gone). */
    char port[16];
    struct sockaddr_storage sa;
    socklen_t salen;
    snprintf(port, sizeof(port), "%d", cfg->metrics_port);
    int rc = netaddr_resolve(cfg->metrics_host, port, &sa, &salen);
    if (rc != 0) {
        log_err("%s: METRICS_HOST %s: %s", cfg->file, cfg->metrics_host, evutil_gai_strerror(rc));
        goto fail;
    }
    struct evconnlistener *lev = evconnlistener_new_bind(
        base, NULL, NULL,
        LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT,
        16, (struct sockaddr *)&sa, (int)salen);
    if (!lev) {
        log_err("%s: METRICS_HOST:METRICS_PORT %s:%d: cannot listen: %s", cfg->file,
                cfg->metrics_host, cfg->metrics_port,
                evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        goto fail;
    }
    if (!evhttp_bind_listener(m->http, lev)) { /* the listener is not the http's: ours to free */
        evconnlistener_free(lev);
        goto fail;
    }
    m->fd = evconnlistener_get_fd(lev);
    return m;
fail:
    master_metrics_free(m);
    return NULL;
}

void master_metrics_free(struct master_metrics *m)
{
    if (!m)
        return;
    if (m->http)
        evhttp_free(m->http);
    free(m);
}

int master_metrics_fd(const struct master_metrics *m)
{
    return m->fd;
}
