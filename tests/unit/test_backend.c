/* test_backend.c - the backend pool without sockets: what it refuses to build,
 * and the order the smooth weighted round robin picks servers in. */
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

int main(void)
{
    log_open("", LOG_ERR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_refuses_too_many_servers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
