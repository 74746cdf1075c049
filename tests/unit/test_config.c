/* test_config.c - config loading: defaults, every kind of bad value, and the
 * one-line messages a user sees. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "bus.h"
#include "config.h"

static char path[64];

static int load(const char *text, struct config *cfg, char *err, size_t errlen)
{
    snprintf(path, sizeof(path), "/tmp/fooking-test-config-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    err[0] = '\0';
    int rc = config_load(cfg, path, err, errlen);
    unlink(path);
    return rc;
}

static void expect_error(const char *text, const char *needle)
{
    struct config cfg;
    char err[1024], want[1200];
    assert_int_equal(load(text, &cfg, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s: %s", path, needle);
    if (strstr(err, want) == NULL)
        fail_msg("error \"%s\" does not contain \"%s\"", err, want);
    assert_null(strchr(err, '\n'));
}

static void test_defaults(void **state)
{
    (void)state;
    struct config cfg;
    char err[1024];
    assert_int_equal(
        load("PORT = 9000\nBACKEND_SERVER = \"127.0.0.1:9001\"\n", &cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg.host, "0.0.0.0");
    assert_int_equal(cfg.port, 9000);
    assert_int_equal(cfg.worker_num, 1);
    assert_int_equal(cfg.log_level, 2);
    assert_string_equal(cfg.log_file, "stdout");
    assert_int_equal(cfg.max_buff_size, 65536);
    assert_int_equal(cfg.event_connect, 0);
    assert_int_equal(cfg.event_close, 1);
    assert_int_equal(cfg.backend_keepalive, 0);
    assert_true(cfg.backend_connect_timeout == 5.0);
    assert_true(cfg.backend_read_timeout == 10.0);
    assert_string_equal(cfg.fastcgi_prefix, "");
    assert_int_equal(cfg.nbackends, 1);
    assert_string_equal(cfg.backends[0].addr, "127.0.0.1:9001");
    assert_int_equal(cfg.backends[0].weight, 1);
    assert_int_equal(cfg.protocol, PROTO_LENGTH);
    assert_null(cfg.router_host);
    config_free(&cfg);
}

static void test_full(void **state)
{
    (void)state;
    struct config cfg;
    char err[1024];
    const char *text = "HOST='127.0.0.1' PORT=9005 WORKER_NUM=4 SERVER_ID=8191\n"
                       "BACKEND_SERVER={['127.0.0.1:9000']=3, ['unix:/run/php.sock']=1}\n"
                       "FASTCGI_PARAMS={SCRIPT_FILENAME='/x/gw.php', N=5}\n"
                       "FASTCGI_PREFIX='HTTP_' ROUTER_HOST='127.0.0.1' ROUTER_PORT=9010\n"
                       "PROTOCOL='websocket' ALLOWED_ORIGINS={'http://a', 'http://b'}\n"
                       "BACKEND_READ_TIMEOUT=0.5 LOG_FILE='fk.log' EVENT_CONNECT=true\n";
    assert_int_equal(load(text, &cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg.worker_num, 4);
    assert_int_equal(cfg.server_id, 8191);
    assert_int_equal(cfg.nbackends, 2);
    int w = 0;
    for (int i = 0; i < 2; i++)
        w += cfg.backends[i].weight;
    assert_int_equal(w, 4);
    assert_int_equal(cfg.nparams, 2);
    assert_string_equal(cfg.fastcgi_prefix, "HTTP_");
    assert_int_equal(cfg.router_port, 9010);
    assert_int_equal(cfg.protocol, PROTO_WEBSOCKET);
    assert_string_equal(cfg.allowed_origins[1], "http://b");
    assert_null(cfg.allowed_origins[2]);
    assert_true(cfg.backend_read_timeout == 0.5);
    assert_int_equal(cfg.event_connect, 1);
    /* relative paths are relative to the config file's directory */
    assert_string_equal(cfg.log_file, "/tmp/fk.log");
    config_free(&cfg);
}

static void test_bus_url(void **state)
{
    (void)state;
    struct config cfg;
    char err[1024];
    assert_int_equal(
        load("ROUTER=1 PORT=1 BUS='redis://:pw@127.0.0.1:6380/2'", &cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg.bus, "redis://:pw@127.0.0.1:6380/2");
    assert_string_equal(cfg.bus_prefix, "fooking:");
    config_free(&cfg);
    /* the password is percent-decoded, as the PHP and Go clients do */
    char host[64], pw[64], e[128];
    int port, db;
    assert_int_equal(bus_parse_url("redis://:s3cr%3At%40x@h:1/3", host, sizeof(host), &port, pw,
                                   sizeof(pw), &db, e, sizeof(e)),
                     0);
    assert_string_equal(pw, "s3cr:t@x");
    assert_string_equal(host, "h");
    assert_int_equal(port, 1);
    assert_int_equal(db, 3);
    assert_int_equal(bus_parse_url("redis://:bad%4@h:1", host, sizeof(host), &port, pw, sizeof(pw),
                                   &db, e, sizeof(e)),
                     -1);
    assert_string_equal(e, "bad %-escape in the password");
    expect_error("ROUTER=1 PORT=1 BUS='redis://:%zz@h:1'", "BUS must be");
}

static void test_router_mode(void **state)
{
    (void)state;
    struct config cfg;
    char err[1024];
    assert_int_equal(load("ROUTER=1 PORT=9010 HOST='127.0.0.1'\n", &cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg.router, 1);
    assert_int_equal(cfg.nbackends, 0); /* gateway keys not required */
    /* The HTTP API: off, and on HOST with a 1 MiB body when on. */
    assert_int_equal(cfg.http_port, 0);
    assert_string_equal(cfg.http_host, "127.0.0.1");
    assert_int_equal(cfg.http_max_body, 1 << 20);
    config_free(&cfg);
    assert_int_equal(load("ROUTER=1 PORT=9010 HTTP_PORT=9011 HTTP_HOST='::1' HTTP_MAX_BODY=4096\n",
                          &cfg, err, sizeof(err)),
                     0);
    assert_int_equal(cfg.http_port, 9011);
    assert_string_equal(cfg.http_host, "::1");
    assert_int_equal(cfg.http_max_body, 4096);
    config_free(&cfg);
    expect_error("ROUTER=1 PORT=9010 HTTP_PORT=9010", "HTTP_PORT must differ from PORT (9010)");
    expect_error("ROUTER=1 PORT=9010 HTTP_PORT=65536",
                 "HTTP_PORT must be an integer from 0 to 65535");
    expect_error("ROUTER=1 PORT=9010 HTTP_HOST=1", "HTTP_HOST must be a string");
    expect_error("ROUTER=1 PORT=9010 HTTP_MAX_BODY=100",
                 "HTTP_MAX_BODY must be an integer from 1024 to 67108864");
}

static void test_errors(void **state)
{
    (void)state;
    expect_error("PORT=1 BACKEND_SERVER='a:1' WORKER_NUM='two'",
                 "WORKER_NUM must be an integer from 1 to 32, got \"two\"");
    expect_error("PORT=1 BACKEND_SERVER='a:1' WORKER_NUM=33",
                 "WORKER_NUM must be an integer from 1 to 32, got 33");
    expect_error("PORT=1 BACKEND_SERVER='a:1' WORKER_NUM=1.5",
                 "WORKER_NUM must be an integer from 1 to 32, got 1.5");
    expect_error("BACKEND_SERVER='a:1'", "PORT is required");
    expect_error("PORT=70000 BACKEND_SERVER='a:1'", "PORT must be an integer from 1 to 65535");
    expect_error("PORT=1", "BACKEND_SERVER is required");
    expect_error("PORT=1 BACKEND_SERVER='nohost'", "BACKEND_SERVER entry \"nohost\" must be");
    expect_error("PORT=1 BACKEND_SERVER={['a:1']=0}", "BACKEND_SERVER weight of \"a:1\"");
    expect_error("PORT=1 BACKEND_SERVER={}", "BACKEND_SERVER must name at least one server");
    expect_error("PORT=1 BACKEND_SERVER='a:1' SERVER_ID=8192",
                 "SERVER_ID must be an integer from 0 to 8191");
    expect_error("PORT=1 BACKEND_SERVER='a:1' LOG_LEVEL=4",
                 "LOG_LEVEL must be an integer from 1 to 3");
    expect_error("PORT=1 BACKEND_SERVER='a:1' PROTOCOL='mqtt'",
                 "PROTOCOL must be \"length\" or \"websocket\"");
    expect_error("PORT=1 BACKEND_SERVER='a:1' FASTCGI_PARAMS='x'",
                 "FASTCGI_PARAMS must be a table");
    expect_error("PORT=1 BACKEND_SERVER='a:1' ROUTER_HOST='h'", "ROUTER_PORT is required");
    expect_error("PORT=1 BACKEND_SERVER='a:1' SSL=1", "SSL_CERT is required");
    expect_error("PORT=1 BACKEND_SERVER='a:1' HOST=5", "HOST must be a string, got 5");
    expect_error("PORT=1 BACKEND_SERVER='a:1' BACKEND_READ_TIMEOUT='x'",
                 "BACKEND_READ_TIMEOUT must be a number");
    expect_error("PORT=1 BACKEND_SERVER='a:1' BUS='http://x'", "BUS must be \"redis://");
    expect_error("PORT=1 BACKEND_SERVER='a:1' BUS='redis://h:99999'", "BUS must be");
}

static void test_lua_syntax_error(void **state)
{
    (void)state;
    struct config cfg;
    char err[1024];
    assert_int_equal(load("PORT = = 1\n", &cfg, err, sizeof(err)), -1);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, ":1:"));
}

/* Limits a value must respect that were silently cut or let through before. */
static void test_bounds(void **state)
{
    (void)state;
    char text[8192];
    /* 65 backends: the pool keeps one bit per server per request */
    int n = snprintf(text, sizeof(text), "PORT = 1\nBACKEND_SERVER = {");
    for (int i = 0; i < 65; i++)
        n += snprintf(text + n, sizeof(text) - (size_t)n, "[\"127.0.0.1:%d\"] = 1, ", 1000 + i);
    snprintf(text + n, sizeof(text) - (size_t)n, "}\n");
    expect_error(text, "BACKEND_SERVER has more than 64 servers");
    /* 64 are fine */
    n = snprintf(text, sizeof(text), "PORT = 1\nBACKEND_SERVER = {");
    for (int i = 0; i < 64; i++)
        n += snprintf(text + n, sizeof(text) - (size_t)n, "[\"127.0.0.1:%d\"] = 1, ", 1000 + i);
    snprintf(text + n, sizeof(text) - (size_t)n, "}\n");
    struct config cfg;
    char err[1024];
    assert_int_equal(load(text, &cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg.nbackends, 64);
    config_free(&cfg);
    /* a secret longer than AUTH may carry */
    char secret[300];
    memset(secret, 's', 257);
    secret[257] = '\0';
    snprintf(text, sizeof(text), "PORT = 1\nBACKEND_SERVER = \"a:1\"\nROUTER_SECRET = \"%s\"\n",
             secret);
    expect_error(text, "ROUTER_SECRET must be at most 256 bytes, got 257");
    secret[256] = '\0';
    snprintf(text, sizeof(text), "PORT = 1\nBACKEND_SERVER = \"a:1\"\nROUTER_SECRET = \"%s\"\n",
             secret);
    assert_int_equal(load(text, &cfg, err, sizeof(err)), 0);
    config_free(&cfg);
    /* a client's output must fit a 32-bit length prefix and hold one message */
    expect_error("PORT = 1\nBACKEND_SERVER = \"a:1\"\nMAX_OUTPUT_SIZE = 4294967296\n",
                 "MAX_OUTPUT_SIZE must be an integer from 4096 to 1073741824");
    expect_error("PORT = 1\nBACKEND_SERVER = \"a:1\"\nMAX_OUTPUT_SIZE = 65536\n"
                 "MAX_BUFF_SIZE = 65537\n",
                 "MAX_BUFF_SIZE must not exceed MAX_OUTPUT_SIZE (65536), got 65537");
    /* the new keys' defaults */
    assert_int_equal(load("PORT = 1\nBACKEND_SERVER = \"a:1\"\n", &cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg.max_conn_per_ip, 0);
    assert_int_equal(cfg.link_timeout, 15);
    assert_int_equal(cfg.backend_max_fails, 1);
    assert_true(cfg.backend_queue_timeout == 10.0);
    assert_true(cfg.backend_fail_timeout == 10.0);
    config_free(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),         cmocka_unit_test(test_full),
        cmocka_unit_test(test_bounds),           cmocka_unit_test(test_router_mode),
        cmocka_unit_test(test_bus_url),          cmocka_unit_test(test_errors),
        cmocka_unit_test(test_lua_syntax_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
