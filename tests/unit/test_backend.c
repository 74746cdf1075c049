/* test_backend.c - the backend pool without sockets: what it refuses to build,
 * the order the smooth weighted round robin picks servers in, pools whose
 * names are resolved with evdns, and the free list requests are reused from. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <event2/event.h>

#include "backend.h"
#include "config.h"
#include "log.h"

/* A config with n numeric servers 127.0.0.1:(9000 + i) of the given weights. */
static void make_config(struct config *cfg, int n, const int *weights)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->backends = calloc((size_t)n, sizeof(*cfg->backends));
    assert_non_null(cfg->backends);
    for (int i = 0; i < n; i++) {
        char addr[32];
        snprintf(addr, sizeof(addr), "127.0.0.1:%d", 9000 + i);
        cfg->backends[i].addr = strdup(addr);
        cfg->backends[i].weight = weights ? weights[i] : 1;
    }
    cfg->nbackends = n;
    cfg->backend_connect_timeout = 1;
    cfg->backend_read_timeout = 1;
    cfg->backend_max_conns = 4;
    cfg->backend_queue_size = 16;
    cfg->backend_queue_timeout = 1;
    cfg->backend_max_fails = 1;
    cfg->backend_fail_timeout = 1;
    cfg->max_output_size = 1 << 20;
    cfg->fastcgi_prefix = "";
}

static void free_config(struct config *cfg)
{
    for (int i = 0; i < cfg->nbackends; i++)
        free(cfg->backends[i].addr);
    free(cfg->backends);
}

/* More servers than a request has bits for is refused, not cut to 64. */
static void test_pool_refuses_too_many_servers(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    struct config cfg;
    make_config(&cfg, CONFIG_MAX_BACKENDS + 1, NULL);
    assert_null(backend_pool_new(base, &cfg, NULL));
    free_config(&cfg);
    make_config(&cfg, CONFIG_MAX_BACKENDS, NULL);
    struct backend_pool *p = backend_pool_new(base, &cfg, NULL);
    assert_non_null(p);
    backend_pool_free(p);
    free_config(&cfg);
    event_base_free(base);
}

/* ---- smooth weighted round robin ---- */

/* The picks of n rounds as letters, 'a' for server 0. */
static void wrr_rounds(struct backend_wrr *w, int nsrv, uint64_t eligible, int rounds, char *out)
{
    for (int i = 0; i < rounds; i++) {
        int k = backend_wrr_pick(w, nsrv, eligible);
        out[i] = k < 0 ? '-' : (char)('a' + k);
    }
    out[rounds] = '\0';
}

static void test_wrr_3_to_1(void **state)
{
    (void)state;
    struct backend_wrr w[2] = {{3, 0}, {1, 0}};
    char got[41], want[41] = "";
    wrr_rounds(w, 2, 3, 40, got);
    for (int i = 0; i < 10; i++)
        strcat(want, "aaba");
    assert_string_equal(got, want); /* 30 a, 10 b, never two b in a row */
}

static void test_wrr_nginx_example(void **state)
{
    (void)state;
    /* nginx's own example: weights 5, 1, 1 give a a b a c a a */
    struct backend_wrr w[3] = {{5, 0}, {1, 0}, {1, 0}};
    char got[15];
    wrr_rounds(w, 3, 7, 14, got);
    assert_string_equal(got, "aabacaaaabacaa");
}

static void test_wrr_eligible(void **state)
{
    (void)state;
    struct backend_wrr w[3] = {{3, 0}, {1, 0}, {1, 0}};
    char got[9];
    wrr_rounds(w, 3, 1u << 1, 3, got); /* only b: down or tried servers are out */
    assert_string_equal(got, "bbb");
    wrr_rounds(w, 3, 0, 2, got);
    assert_string_equal(got, "--");
    struct backend_wrr big[CONFIG_MAX_BACKENDS];
    for (int i = 0; i < CONFIG_MAX_BACKENDS; i++)
        big[i] = (struct backend_wrr){1, 0};
    /* bit 63 is a server too */
    assert_int_equal(backend_wrr_pick(big, CONFIG_MAX_BACKENDS, 1ULL << 63), 63);
}

/* ---- backend_pool_new_async ---- */

struct ready {
    int calls;
    struct backend_pool *pool;
    char err[400];
};

static void on_ready(struct backend_pool *p, const char *err, void *arg)
{
    struct ready *r = arg;
    r->calls++;
    r->pool = p;
    snprintf(r->err, sizeof(r->err), "%s", err ? err : "");
}

/* Resolves one server address with backend_pool_new_async and runs the loop
 * until the result is delivered (bounded by a 60 s timer: with a DNS server
 * out of reach, evdns retries before it gives up). */
static struct ready resolve_async(const char *addr)
{
    struct event_base *base = event_base_new();
    struct config cfg;
    make_config(&cfg, 1, NULL);
    free(cfg.backends[0].addr);
    cfg.backends[0].addr = strdup(addr);
    struct ready r = {0};
    struct backend_pool_pending *pp = backend_pool_new_async(base, &cfg, NULL, on_ready, &r);
    free_config(&cfg); /* the pending pool must not need it any more */
    assert_non_null(pp);
    assert_int_equal(r.calls, 0); /* never from inside the call */
    struct timeval limit = {60, 0};
    event_base_loopexit(base, &limit);
    while (r.calls == 0 && event_base_got_exit(base) == 0)
        event_base_loop(base, EVLOOP_ONCE);
    assert_int_equal(r.calls, 1);
    backend_pool_free(r.pool);
    event_base_free(base);
    return r;
}

static void test_async_numeric_and_unix(void **state)
{
    (void)state;
    struct ready r = resolve_async("127.0.0.1:9000");
    assert_non_null(r.pool);
    assert_string_equal(r.err, "");
    r = resolve_async("unix:/tmp/nowhere.sock");
    assert_non_null(r.pool);
}

static void test_async_name(void **state)
{
    (void)state;
    struct ready r = resolve_async("localhost:9000");
    assert_non_null(r.pool);
    assert_string_equal(r.err, "");
}

static void test_async_unresolvable(void **state)
{
    (void)state;
    struct ready r = resolve_async("no-such-host.invalid:9000");
    assert_null(r.pool);
    assert_non_null(strstr(r.err, "backend no-such-host.invalid:9000: cannot resolve"));
    r = resolve_async("no-port-here");
    assert_null(r.pool);
    assert_non_null(strstr(r.err, "no-port-here"));
}

static void test_async_cancel(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    struct config cfg;
    make_config(&cfg, 2, NULL);
    free(cfg.backends[1].addr);
    cfg.backends[1].addr = strdup("localhost:9001");
    struct ready r = {0};
    struct backend_pool_pending *pp = backend_pool_new_async(base, &cfg, NULL, on_ready, &r);
    assert_non_null(pp);
    backend_pool_new_cancel(pp);
    struct timeval limit = {0, 200000};
    event_base_loopexit(base, &limit);
    event_base_dispatch(base);
    assert_int_equal(r.calls, 0);
    free_config(&cfg);
    event_base_free(base);
}

/* ---- the request free list ---- */

static const char test_sid[SID_LEN + 1] = "0123456789abcdef";

/* A freed request comes back for the next one, its buffers kept and emptied
 * and nothing else of its last use left. */
static void test_request_recycled(void **state)
{
    (void)state;
    struct fcgi_params *p = fcgi_params_new(NULL, 0);
    struct request *r = request_new(NULL, NULL, NULL, test_sid, p, EVENT_MESSAGE);
    struct evbuffer *body = r->body, *reply = r->reply;
    evbuffer_add(body, "hello", 5);
    evbuffer_add(reply, "world", 5);
    r->failed = r->done = 1;
    r->cgi.status = 404;
    request_free(r);

    struct request *again = request_new(NULL, NULL, NULL, test_sid, p, EVENT_CLOSE);
    assert_ptr_equal(again, r);
    assert_ptr_equal(again->body, body);
    assert_ptr_equal(again->reply, reply);
    assert_int_equal(evbuffer_get_length(again->body), 0);
    assert_int_equal(evbuffer_get_length(again->reply), 0);
    assert_int_equal(again->failed, 0);
    assert_int_equal(again->done, 0);
    assert_int_equal(again->event, EVENT_CLOSE);
    assert_int_equal(again->cgi.status, 200);
    assert_ptr_equal(again->params, p);
    assert_int_equal(p->refs, 2);
    request_free(again);
    assert_int_equal(p->refs, 1);
    fcgi_params_unref(p);
}

/* More requests freed at once than the list keeps: the rest are freed for
 * real, and dropping the list frees it all (ASan checks both). Runs last:
 * after the drop, nothing is kept any more. */
static void test_request_free_list_bounded(void **state)
{
    (void)state;
    enum { N = REQUEST_FREE_MAX + 10 };
    struct fcgi_params *p = fcgi_params_new(NULL, 0);
    struct request **rs = calloc(N, sizeof(*rs));
    assert_non_null(rs);
    for (int i = 0; i < N; i++) {
        rs[i] = request_new(NULL, NULL, NULL, test_sid, p, EVENT_MESSAGE);
        evbuffer_add(rs[i]->body, "x", 1);
    }
    for (int i = 0; i < N; i++)
        request_free(rs[i]);
    request_free_list_drop();
    struct request *r = request_new(NULL, NULL, NULL, test_sid, p, EVENT_MESSAGE);
    request_free(r); /* not kept now: freed */
    free(rs);
    assert_int_equal(p->refs, 1);
    fcgi_params_unref(p);
}

int main(void)
{
    log_open("", LOG_ERR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_refuses_too_many_servers),
        cmocka_unit_test(test_wrr_3_to_1),
        cmocka_unit_test(test_wrr_nginx_example),
        cmocka_unit_test(test_wrr_eligible),
        cmocka_unit_test(test_async_numeric_and_unix),
        cmocka_unit_test(test_async_name),
        cmocka_unit_test(test_async_unresolvable),
        cmocka_unit_test(test_async_cancel),
        cmocka_unit_test(test_request_recycled),
        cmocka_unit_test(test_request_free_list_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
