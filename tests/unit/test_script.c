/* test_script.c - the Lua protocol script API (script.c) against a minimal
 * client: a calloc'ed struct client with a conn on a socketpair, no
 * worker. What a script may touch is the buffers and the connection of the
 * call in progress; anything else (kept from an earlier call, made up) is a
 * Lua error, logged with the SID. fc.close only marks the client. A runaway
 * handler is stopped with its message. Scripts are tiny files in a temp dir. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "client.h"
#include "conn.h"
#include "log.h"
#include "script.h"

static char dir[64];
static char logpath[128];
static struct event_base *base;

struct fake {
    struct client c;
    int peer; /* the other end of the socketpair */
};

static void fake_init(struct fake *f, const char *sid)
{
    memset(f, 0, sizeof(*f));
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    f->c.conn = conn_new(base, sv[0], NULL);
    assert_non_null(f->c.conn);
    f->peer = sv[1];
    snprintf(f->c.sid, sizeof(f->c.sid), "%s", sid);
}

static void fake_free(struct fake *f)
{
    conn_free(f->c.conn);
    close(f->peer);
}

static struct script *load(const char *name, const char *text)
{
    char path[256], err[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
    struct script *s = script_load(path, err, sizeof(err));
    if (!s)
        fail_msg("script_load %s: %s", name, err);
    return s;
}

static char *read_log(void)
{
    static char buf[65536];
    FILE *fp = fopen(logpath, "r");
    size_t n = fp ? fread(buf, 1, sizeof(buf) - 1, fp) : 0;
    if (fp)
        fclose(fp);
    buf[n] = '\0';
    return buf;
}

static void clear_log(void)
{
    FILE *fp = fopen(logpath, "w");
    if (fp)
        fclose(fp);
    log_reopen();
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/fooking-script-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(logpath, sizeof(logpath), "%s/log", dir);
    assert_int_equal(log_open(logpath, 3), 0);
    base = event_base_new();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    event_base_free(base);
    log_close();
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *ECHO = "local fb = require('fooking.buffer')\n"
                          "local fc = require('fooking.connection')\n"
                          "function onRead(conn, rid, input, output)\n"
                          "  local d = fb.data(input)\n"
                          "  if #d < 3 then return -1 end\n"
                          "  fb.append(output, d:sub(1, 3) .. '#' .. rid .. '#' .. fc.id(conn))\n"
                          "  fb.seek(input, 3)\n"
                          "  return 7\n"
                          "end\n";

static void test_echo_and_return_sign(void **state)
{
    (void)state;
    struct script *s = load("echo.lua", ECHO);
    assert_true(script_has_read(s));
    assert_false(script_has_write(s));
    struct fake f;
    fake_init(&f, "0123456789abcdef");
    struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
    evbuffer_add(in, "ab", 2);
    assert_int_equal(script_on_read(s, &f.c, 0, in, out), -1); /* need more */
    assert_int_equal(evbuffer_get_length(out), 0);
    evbuffer_add(in, "cdef", 4);
    assert_int_equal(script_on_read(s, &f.c, 41, in, out), 1); /* 7: only the sign */
    const char *want = "abc#41#0123456789abcdef";
    assert_int_equal(evbuffer_get_length(out), strlen(want));
    assert_memory_equal(evbuffer_pullup(out, -1), want, strlen(want));
    assert_int_equal(evbuffer_get_length(in), 3); /* seek dropped 3 */
    evbuffer_free(in);
    evbuffer_free(out);
    fake_free(&f);
    script_unref(s);
}

static void test_returns_not_integer_are_zero(void **state)
{
    (void)state;
    struct script *s = load("ret.lua", "function onRead(c, rid, i, o)\n"
                                       "  if rid == 0 then return nil end\n"
                                       "  if rid == 1 then return 'many' end\n"
                                       "  if rid == 2 then return -5 end\n"
                                       "  return 0\n"
                                       "end\n");
    struct fake f;
    fake_init(&f, "aaaaaaaaaaaaaaaa");
    struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
    assert_int_equal(script_on_read(s, &f.c, 0, in, out), 0);
    assert_int_equal(script_on_read(s, &f.c, 1, in, out), 0);
    assert_int_equal(script_on_read(s, &f.c, 2, in, out), -1);
    assert_int_equal(script_on_read(s, &f.c, 3, in, out), 0);
    evbuffer_free(in);
    evbuffer_free(out);
    fake_free(&f);
    script_unref(s);
}

/* Buffers and connections kept from a call (here: of client A) are refused
 * in a later call (of client B): a Lua error naming the argument, logged
 * with B's SID; nothing is written to A. */
static const char *KEEPER = "local fb = require('fooking.buffer')\n"
                            "local fc = require('fooking.connection')\n"
                            "function onRead(conn, rid, input, output)\n"
                            "  local cmd = fb.data(input); fb.seek(input, #cmd)\n"
                            "  if cmd == 'keep' then ki, ko, kc = input, output, conn; return 1 end\n"
                            "  if cmd == 'out' then fb.append(ko, 'stale') end\n"
                            "  if cmd == 'in' then fb.append(output, fb.data(ki)) end\n"
                            "  if cmd == 'conn' then fc.send(kc, 'stale') end\n"
                            "  if cmd == 'connbuf' then fb.size(fc.buffer(kc)) end\n"
                            "  if cmd == 'number' then fb.size(12345) end\n"
                            "  if cmd == 'nil' then fb.append(nil, 'x') end\n"
                            "  if cmd == 'table' then fc.id({}) end\n"
                            "  if cmd == 'file' then fb.size(io.stdout) end\n"
                            "  if cmd == 'ownconn' then fb.append(output, fc.id(conn)) end\n"
                            "  if cmd == 'mybuf' then\n"
                            "    fb.append(output, tostring(fb.size(fc.buffer(conn)))) end\n"
                            "  return 1\n"
                            "end\n";

/* As client.c calls onRead: the input is the client's own input buffer (so
 * a kept input stays a live, distinct buffer while its client lives). */
static int call(struct script *s, struct client *c, const char *cmd, struct evbuffer *out)
{
    struct evbuffer *in = conn_input(c->conn);
    evbuffer_drain(in, evbuffer_get_length(in));
    evbuffer_add(in, cmd, strlen(cmd));
    return script_on_read(s, c, 1, in, out);
}

static void test_stale_and_made_up_pointers_refused(void **state)
{
    (void)state;
    struct script *s = load("keeper.lua", KEEPER);
    struct fake a, b;
    fake_init(&a, "aaaaaaaaaaaaaaaa");
    fake_init(&b, "bbbbbbbbbbbbbbbb");
    struct evbuffer *kept_out = evbuffer_new();
    assert_int_equal(call(s, &a.c, "keep", kept_out), 1);
    static const struct {
        const char *cmd, *msg;
    } bad[] = {
        {"out", "not a buffer of the current call"},
        {"in", "not a buffer of the current call"},
        {"conn", "not the connection of the current call"},
        {"connbuf", "not the connection of the current call"},
        {"number", "not a buffer of the current call"},
        {"nil", "not a buffer of the current call"},
        {"table", "not the connection of the current call"},
        {"file", "not a buffer of the current call"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        clear_log();
        struct evbuffer *out = evbuffer_new();
        int rc = call(s, &b.c, bad[i].cmd, out);
        if (rc != SCRIPT_FAILED)
            fail_msg("%s: returned %d, want SCRIPT_FAILED", bad[i].cmd, rc);
        const char *log = read_log();
        if (!strstr(log, "onRead failed for client bbbbbbbbbbbbbbbb")
            || !strstr(log, bad[i].msg))
            fail_msg("%s: log does not say '%s' for b: %s", bad[i].cmd, bad[i].msg, log);
        evbuffer_free(out);
    }
    assert_int_equal(evbuffer_get_length(kept_out), 0); /* nothing reached A's output */
    assert_int_equal(evbuffer_get_length(conn_output(a.c.conn)), 0);
    /* the same calls on the call's own pointers work, and the state recovered */
    struct evbuffer *out = evbuffer_new();
    assert_int_equal(call(s, &b.c, "ownconn", out), 1);
    assert_int_equal(evbuffer_get_length(out), 16);
    assert_memory_equal(evbuffer_pullup(out, -1), "bbbbbbbbbbbbbbbb", 16);
    evbuffer_drain(out, 16);
    assert_int_equal(call(s, &b.c, "mybuf", out), 1); /* its input, after the seek: empty */
    assert_int_equal(evbuffer_get_length(out), 1);
    assert_memory_equal(evbuffer_pullup(out, -1), "0", 1);
    evbuffer_free(out);
    evbuffer_free(kept_out);
    fake_free(&a);
    fake_free(&b);
    script_unref(s);
}

/* Between calls the script holds no pointer at all: a handler called with
 * its own pointers after another client's error still works, and an
 * onConnect (no buffers) cannot reach onRead's buffers kept before. */
static void test_on_connect_has_no_buffers(void **state)
{
    (void)state;
    struct script *s = load("conn.lua", "local fb = require('fooking.buffer')\n"
                                        "local fc = require('fooking.connection')\n"
                                        "function onRead(c, rid, i, o) ko = o; return 1 end\n"
                                        "function onConnect(c) fc.send(c, 'hi'); fb.append(ko, 'x') end\n");
    struct fake f;
    fake_init(&f, "cccccccccccccccc");
    struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
    assert_int_equal(script_on_read(s, &f.c, 0, in, out), 1);
    clear_log();
    assert_int_equal(script_on_connect(s, &f.c), SCRIPT_FAILED);
    assert_non_null(strstr(read_log(), "not a buffer of the current call"));
    assert_non_null(strstr(read_log(), "onConnect failed for client cccccccccccccccc"));
    /* fc.send before the error did write to its own connection */
    assert_int_equal(evbuffer_get_length(conn_output(f.c.conn)), 2);
    assert_int_equal(evbuffer_get_length(out), 0);
    evbuffer_free(in);
    evbuffer_free(out);
    fake_free(&f);
    script_unref(s);
}

static void test_close_is_deferred(void **state)
{
    (void)state;
    struct script *s = load("close.lua", "local fb = require('fooking.buffer')\n"
                                         "local fc = require('fooking.connection')\n"
                                         "function onRead(conn, rid, input, output)\n"
                                         "  fc.send(conn, 'bye')\n"
                                         "  fc.close(conn)\n"
                                         "  fb.append(output, 'after close ' .. fc.id(conn))\n"
                                         "  fc.send(conn, '!')\n"
                                         "  return 1\n"
                                         "end\n");
    struct fake f;
    fake_init(&f, "dddddddddddddddd");
    struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
    assert_int_equal(script_on_read(s, &f.c, 0, in, out), 1);
    assert_int_equal(f.c.script_close, 1); /* marked, for the caller to close */
    assert_int_equal(f.c.dead, 0);
    const char *want = "after close dddddddddddddddd";
    assert_int_equal(evbuffer_get_length(out), strlen(want));
    assert_memory_equal(evbuffer_pullup(out, -1), want, strlen(want));
    struct evbuffer *o = conn_output(f.c.conn);
    assert_int_equal(evbuffer_get_length(o), 4); /* still writable within the call */
    assert_memory_equal(evbuffer_pullup(o, -1), "bye!", 4);
    /* a client already closing gets no more bytes from fc.send */
    f.c.closing = 1;
    evbuffer_drain(o, 4);
    assert_int_equal(evbuffer_get_length(o), 0);
    assert_int_equal(script_on_read(s, &f.c, 1, in, out), 1);
    if (evbuffer_get_length(o) != 0)
        fail_msg("closing client got %zu bytes: %.*s", evbuffer_get_length(o),
                 (int)evbuffer_get_length(o), (const char *)evbuffer_pullup(o, -1));
    evbuffer_free(in);
    evbuffer_free(out);
    fake_free(&f);
    script_unref(s);
}

static void test_runaway_handler_stopped(void **state)
{
    (void)state;
    struct script *s = load("spin.lua", "local fb = require('fooking.buffer')\n"
                                        "function onRead(conn, rid, input, output)\n"
                                        "  if rid == 0 then\n"
                                        "    while true do end\n"
                                        "  end\n"
                                        "  fb.append(output, 'alive')\n"
                                        "  return 1\n"
                                        "end\n");
    struct fake f;
    fake_init(&f, "eeeeeeeeeeeeeeee");
    struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
    clear_log();
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(script_on_read(s, &f.c, 0, in, out), SCRIPT_FAILED);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double el = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_true(el >= 1.0 && el < 3.0);
    const char *log = read_log();
    if (!strstr(log, "onRead failed for client eeeeeeeeeeeeeeee")
        || !strstr(log, "spin.lua:4: handler ran longer than 1.0 s"))
        fail_msg("runaway log line: %s", log);
    /* the next call gets a fresh second */
    assert_int_equal(script_on_read(s, &f.c, 1, in, out), 1);
    assert_int_equal(evbuffer_get_length(out), 5);
    evbuffer_free(in);
    evbuffer_free(out);
    fake_free(&f);
    script_unref(s);
}

static void test_load_errors_and_package_path(void **state)
{
    (void)state;
    char path[256], err[512];
    snprintf(path, sizeof(path), "%s/missing.lua", dir);
    assert_null(script_load(path, err, sizeof(err)));
    assert_non_null(strstr(err, "SCRIPT_FILE"));
    assert_non_null(strstr(err, "missing.lua"));
    snprintf(path, sizeof(path), "%s/syntax.lua", dir);
    FILE *fp = fopen(path, "w");
    fputs("function onRead(\n", fp);
    fclose(fp);
    assert_null(script_load(path, err, sizeof(err)));
    assert_non_null(strstr(err, "syntax.lua"));
    /* a script may require a helper next to it */
    snprintf(path, sizeof(path), "%s/helper_mod.lua", dir);
    fp = fopen(path, "w");
    fputs("return { word = 'from helper' }\n", fp);
    fclose(fp);
    struct script *s = load("user.lua", "local h = require('helper_mod')\n"
                                        "local fb = require('fooking.buffer')\n"
                                        "function onWrite(c, rid, i, o) fb.append(o, h.word) "
                                        "return 1 end\n");
    assert_false(script_has_read(s));
    assert_true(script_has_write(s));
    struct fake f;
    fake_init(&f, "ffffffffffffffff");
    struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
    assert_int_equal(script_on_write(s, &f.c, 0, in, out), 1);
    assert_int_equal(evbuffer_get_length(out), 11);
    assert_memory_equal(evbuffer_pullup(out, -1), "from helper", 11);
    /* a script's refs: the worker's and a client's; freed with the last */
    assert_ptr_equal(script_ref(s), s);
    script_unref(s);
    evbuffer_free(in);
    evbuffer_free(out);
    fake_free(&f);
    script_unref(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_echo_and_return_sign),
        cmocka_unit_test(test_returns_not_integer_are_zero),
        cmocka_unit_test(test_stale_and_made_up_pointers_refused),
        cmocka_unit_test(test_on_connect_has_no_buffers),
        cmocka_unit_test(test_close_is_deferred),
        cmocka_unit_test(test_runaway_handler_stopped),
        cmocka_unit_test(test_load_errors_and_package_path),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
