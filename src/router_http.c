/* router_http.c - the router's HTTP JSON API and GET /metrics (DESIGN §14).
 *
 * evhttp serves HTTP_HOST:HTTP_PORT on the router's own loop. Each API
 * request becomes the router messages the binary protocol would carry
 * (router_api.c) and runs on a local connection (router_cmd.h): the same
 * command table as a backend's connection, in router mode or bus mode, so
 * the two behave the same. Commands are done when they have run; queries
 * wait for their answers (gateways, the bus) without blocking the loop, and
 * the reply is sent when the last one is in.
 *
 * Ownership: a request waiting for answers is a struct rhttp_req on h->reqs,
 * freed in rhttp_req_free only: when it is answered, when its client goes
 * (the connection's close callback) or when the router stops. Its local
 * connection is closed there too; the router frees that once nothing (a
 * gateway query, a bus reply) refers to it. */
#include "router_http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "proc.h"
#include "rmsg.h"
#include "router.h"
#include "router_api.h"
#include "router_cmd.h"
#include "router_metrics.h"

/* Header bytes of one request: far more than any API request needs. */
#define RHTTP_MAX_HEADERS (64 * 1024)

struct rhttp_req;

struct router_http {
    struct router *r;
    struct evhttp *http;
    size_t max_body;
    int has_secret;
    unsigned refused;             /* requests refused, for the log's rate limit */
    TAILQ_HEAD(, rhttp_req) reqs; /* waiting for answers */
};

struct rhttp_req {
    struct router_http *h;
    struct evhttp_request *req;
    struct rconn *c;
    struct router_api_req api;
    struct evbuffer *answers; /* the answers in so far, whole messages back to back */
    size_t *lens;             /* their lengths */
    size_t got;
    int running; /* inside rhttp_run: answers are collected, not replied to */
    int dropped; /* the router dropped the local connection */
    int waiting; /* on h->reqs, with the close callback set */
    char peer[64];
    TAILQ_ENTRY(rhttp_req) entry;
};

static void rhttp_send_json(struct evhttp_request *req, int status, json_t *body)
{
    struct evbuffer *out = evbuffer_new();
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;

    json_decref(body);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    if (out == NULL || text == NULL || evbuffer_add(out, text, strlen(text)) < 0
        || evbuffer_add(out, "\n", 1) < 0) {
        free(text);
        if (out != NULL)
            evbuffer_free(out);
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    free(text);
    evhttp_send_reply(req, status, NULL, out);
    evbuffer_free(out);
}

/* A refusal: {"error": why}, logged (the first ten, then one in a thousand). */
static void rhttp_refuse(struct router_http *h, struct evhttp_request *req, const char *peer,
                         int status, const char *why)
{
    h->refused++;
    if (h->refused <= 10 || h->refused % 1000 == 0) {
        const char *uri = evhttp_request_get_uri(req);
        char text[160];
        rmsg_escape(uri, uri != NULL ? strlen(uri) : 0, text, sizeof(text));
        log_err("router: http %s: %s refused (%d): %s (%u refused)", peer, text, status, why,
                h->refused);
    }
    rhttp_send_json(req, status, json_pack("{ss}", "error", why));
}

/* Off h->reqs and its connection's close callback: before its reply is
 * sent, since sending may free the request (evhttp frees one whose
 * connection is gone at once). */
static void rhttp_unwait(struct rhttp_req *p)
{
    struct evhttp_connection *evcon;

    if (!p->waiting)
        return;
    p->waiting = 0;
    TAILQ_REMOVE(&p->h->reqs, p, entry);
    if ((evcon = evhttp_request_get_connection(p->req)) != NULL)
        evhttp_connection_set_closecb(evcon, NULL, NULL);
}

/* Frees what the request holds; its evhttp_request is evhttp's (answered,
 * or freed with its connection) by then. */
static void rhttp_req_free(struct rhttp_req *p)
{
    rhttp_unwait(p);
    if (p->c != NULL)
        router_local_close(p->c);
    router_api_req_free(&p->api);
    if (p->answers != NULL)
        evbuffer_free(p->answers);
    free(p->lens);
    free(p);
}

/* Every answer is in (or the router dropped the request): the reply. */
static void rhttp_finish(struct rhttp_req *p)
{
    const unsigned char **ans = NULL;
    unsigned char *all;
    char err[RMSG_MAX_ERROR + 64];
    int status = 500;
    json_t *o = NULL;

    rhttp_unwait(p);
    if (p->dropped) {
        rhttp_refuse(p->h, p->req, p->peer, 503,
                     "the router could not run the request now (see its log)");
        rhttp_req_free(p);
        return;
    }
    all = evbuffer_pullup(p->answers, -1);
    if ((ans = calloc(p->api.nanswers + 1, sizeof(*ans))) != NULL
        && (all != NULL || p->api.nanswers == 0)) {
        size_t off = 0;
        for (size_t i = 0; i < p->api.nanswers; i++) {
            ans[i] = all + off;
            off += p->lens[i];
        }
        o = router_api_render(&p->api, ans, p->lens, &status, err, sizeof(err));
    } else {
        snprintf(err, sizeof(err), "out of memory");
    }
    free(ans);
    if (o != NULL)
        rhttp_send_json(p->req, 200, o);
    else
        rhttp_refuse(p->h, p->req, p->peer, status, err);
    rhttp_req_free(p);
}

/* router_answer_fn: an answer of the local connection, or NULL: dropped. */
static void rhttp_answer(void *arg, struct evbuffer *msg)
{
    struct rhttp_req *p = arg;

    if (msg == NULL) {
        p->c = NULL; /* the router closed it */
        p->dropped = 1;
    } else if (p->got < p->api.nanswers) {
        p->lens[p->got] = evbuffer_get_length(msg);
        if (evbuffer_add_buffer(p->answers, msg) < 0) {
            p->dropped = 1;
        } else {
            p->got++;
        }
    }
    if (!p->running && (p->dropped || p->got == p->api.nanswers))
        rhttp_finish(p);
}

/* The client went while its request waited: the request goes with it. If
 * evhttp detached the request from the connection (EOF), it is ours to free. */
static void rhttp_closed(struct evhttp_connection *evcon, void *arg)
{
    struct rhttp_req *p = arg;
    struct evhttp_request *req = p->req;

    log_debug("router: http %s: client gone before its answer", p->peer);
    TAILQ_REMOVE(&p->h->reqs, p, entry);
    p->waiting = 0;
    if (evhttp_request_get_connection(req) == NULL)
        evhttp_request_free(req);
    rhttp_req_free(p);
}

/* Runs the messages; replies now, or once the answers are in. */
static void rhttp_run(struct router_http *h, struct evhttp_request *req, const char *peer,
                      struct router_api_req *api)
{
    struct rhttp_req *p = calloc(1, sizeof(*p));
    int rc = RMSG_OK;

    if (p == NULL || (p->answers = evbuffer_new()) == NULL
        || (p->lens = calloc(api->nanswers + 1, sizeof(*p->lens))) == NULL
        || (p->c = router_local_new(h->r, peer, rhttp_answer, p)) == NULL) {
        router_api_req_free(api);
        if (p != NULL)
            rhttp_req_free(p);
        rhttp_refuse(h, req, peer, 500, "out of memory");
        return;
    }
    p->h = h;
    p->req = req;
    p->api = *api;
    memset(api, 0, sizeof(*api));
    snprintf(p->peer, sizeof(p->peer), "%s", peer);
    /* On the bus, a command would be dropped and a query answered ERROR:
     * the caller hears it at once, as 503. */
    if (router_conn_bus_ready(p->c) == 0) {
        rhttp_refuse(h, req, peer, 503, "the bus is not connected");
        rhttp_req_free(p);
        return;
    }
    p->running = 1;
    for (size_t i = 0; i < p->api.n && rc == RMSG_OK && !p->dropped; i++) {
        rc = router_local_run(p->c, &p->api.msgs[i].m);
        if (rc != RMSG_OK) {
            char why[128];
            snprintf(why, sizeof(why), "%s: %s", rmsg_type_name(p->api.msgs[i].m.type),
                     rmsg_strerror(rc));
            rhttp_refuse(h, req, peer, rc == RMSG_ERR_LEN ? 413 : 400, why);
            rhttp_req_free(p);
            return;
        }
    }
    p->running = 0;
    if (p->dropped || p->got == p->api.nanswers) {
        rhttp_finish(p);
        return;
    }
    p->waiting = 1;
    TAILQ_INSERT_TAIL(&h->reqs, p, entry);
    evhttp_connection_set_closecb(evhttp_request_get_connection(req), rhttp_closed, p);
}

/* ROUTER_SECRET as a bearer token, checked as the binary protocol's SECRET is. */
static int rhttp_authorized(struct router_http *h, struct evhttp_request *req)
{
    const char *auth = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    if (!h->has_secret)
        return 1;
    if (auth == NULL || strncasecmp(auth, "Bearer ", 7) != 0)
        return 0;
    auth += 7;
    while (*auth == ' ')
        auth++;
    return router_secret_ok(h->r, auth, strlen(auth));
}

/* A GET's query string as {"name": ["value", ...]}. */
static json_t *rhttp_query_args(const char *query)
{
    struct evkeyvalq kv;
    struct evkeyval *e;
    json_t *o = json_object();

    TAILQ_INIT(&kv);
    if (o == NULL || (query != NULL && evhttp_parse_query_str(query, &kv) < 0)) {
        evhttp_clear_headers(&kv);
        json_decref(o);
        return NULL;
    }
    TAILQ_FOREACH(e, &kv, next)
    {
        json_t *arr = json_object_get(o, e->key);
        if (arr == NULL)
            json_object_set_new(o, e->key, arr = json_array());
        json_array_append_new(arr, json_string(e->value));
    }
    evhttp_clear_headers(&kv);
    return o;
}

static void rhttp_handle(struct evhttp_request *req, void *arg)
{
    struct router_http *h = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
    enum evhttp_cmd_type method = evhttp_request_get_command(req);
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    char peer[64], err[256];
    char *addr = NULL;
    ev_uint16_t port = 0;
    struct router_api_req api;
    json_t *args;
    int ep, get;

    evhttp_connection_get_peer(evcon, &addr, &port);
    snprintf(peer, sizeof(peer), "http %s:%u", addr != NULL ? addr : "?", port);
    if (!rhttp_authorized(h, req)) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate", "Bearer");
        rhttp_refuse(h, req, peer, 401, "Authorization: Bearer <ROUTER_SECRET> required");
        return;
    }
    if (path == NULL)
        path = "/";
    if (strcmp(path, "/metrics") == 0) {
        struct evbuffer *out;
        if (method != EVHTTP_REQ_GET) {
            evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET");
            rhttp_refuse(h, req, peer, 405, "/metrics: GET only");
            return;
        }
        if ((out = evbuffer_new()) == NULL) {
            evhttp_send_error(req, 500, "out of memory");
            return;
        }
        router_metrics_write(h->r, out);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                          METRICS_CONTENT_TYPE);
        evhttp_send_reply(req, 200, NULL, out);
        evbuffer_free(out);
        return;
    }
    if ((ep = router_api_find(path)) < 0) {
        snprintf(err, sizeof(err), "no such endpoint: %.200s", path);
        rhttp_refuse(h, req, peer, 404, err);
        return;
    }
    get = router_api_is_get(ep);
    if (method != (get ? EVHTTP_REQ_GET : EVHTTP_REQ_POST)) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", get ? "GET" : "POST");
        snprintf(err, sizeof(err), "%s: %s only", path, get ? "GET" : "POST");
        rhttp_refuse(h, req, peer, 405, err);
        return;
    }
    if (get) {
        args = rhttp_query_args(evhttp_uri_get_query(uri));
        if (args == NULL) {
            rhttp_refuse(h, req, peer, 400, "the query string is malformed");
            return;
        }
    } else {
        size_t n = evbuffer_get_length(in);
        json_error_t jerr;
        if (n > h->max_body) {
            snprintf(err, sizeof(err), "body: %zu bytes, over HTTP_MAX_BODY (%zu)", n, h->max_body);
            rhttp_refuse(h, req, peer, 413, err);
            return;
        }
        args = json_loadb(n > 0 ? (const char *)evbuffer_pullup(in, -1) : "", n,
                          JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
        if (args == NULL) {
            snprintf(err, sizeof(err), "body: not JSON (line %d, column %d: %s)", jerr.line,
                     jerr.column, jerr.text);
            rhttp_refuse(h, req, peer, 400, err);
            return;
        }
    }
    if (router_api_build(ep, args, &api, err, sizeof(err)) < 0) {
        json_decref(args);
        rhttp_refuse(h, req, peer, 400, err);
        return;
    }
    json_decref(args); /* api holds its own reference */
    rhttp_run(h, req, peer, &api);
}

struct router_http *router_http_new(struct router *r)
{
    const struct config *cfg = router_config(r);
    struct router_http *h = calloc(1, sizeof(*h));
    int fd = -1;

    if (h == NULL || (h->http = evhttp_new(router_base(r))) == NULL) {
        log_err("router: out of memory starting the HTTP API");
        goto fail;
    }
    h->r = r;
    h->max_body = cfg->http_max_body;
    TAILQ_INIT(&h->reqs);
    h->has_secret = router_has_secret(r);
    /* evhttp refuses a body past twice HTTP_MAX_BODY itself, before reading
     * it (a 413 of its own, and the connection closed), so no request can
     * make the router hold more; one in between gets the API's JSON 413. */
    evhttp_set_max_body_size(h->http, (ev_ssize_t)(2 * cfg->http_max_body));
    evhttp_set_max_headers_size(h->http, RHTTP_MAX_HEADERS);
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD
                                            | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE
                                            | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(h->http, rhttp_handle, h);
    if ((fd = proc_listen_shared(cfg->http_host, cfg->http_port)) < 0)
        goto fail;
    if (evhttp_accept_socket_with_handle(h->http, fd) == NULL) {
        log_err("router: HTTP API on %s:%d: cannot accept", cfg->http_host, cfg->http_port);
        evutil_closesocket(fd);
        goto fail;
    }
    if (!h->has_secret && !proc_is_loopback(fd))
        log_err("router: WARNING: HTTP API on %s:%d, not a loopback address, without "
                "ROUTER_SECRET: anyone who can reach this port can message and kick every "
                "client. Set ROUTER_SECRET or bind HTTP_HOST to 127.0.0.1.",
                cfg->http_host, cfg->http_port);
    log_info("router: HTTP API on %s:%d (max body %zu bytes%s)", cfg->http_host, cfg->http_port,
             h->max_body, h->has_secret ? ", bearer ROUTER_SECRET required" : "");
    return h;
fail:
    router_http_free(h);
    return NULL;
}

void router_http_free(struct router_http *h)
{
    struct rhttp_req *p;

    if (h == NULL)
        return;
    /* Their connections go with evhttp_free, and the requests with them. */
    while ((p = TAILQ_FIRST(&h->reqs)) != NULL)
        rhttp_req_free(p);
    if (h->http != NULL)
        evhttp_free(h->http);
    free(h);
}

static int router_http_wanted(const struct config *cfg)
{
    return cfg->http_port > 0;
}
static void *router_http_start(struct router *r)
{
    return router_http_new(r);
}
static void router_http_stop(void *h)
{
    router_http_free(h);
}
const struct router_service router_http_service = {router_http_wanted, router_http_start,
                                                   router_http_stop};
