/* script.c - the Lua protocol script of a worker (one lua_State per worker).
 *
 * The original API hands scripts bare pointers (light userdata) for buffers
 * and connections. Here a script can only use the pointers of the call in
 * progress: any other value (a buffer kept from an earlier call, a made-up
 * number) is refused with a Lua error instead of touching freed memory.
 * fc.close() only marks the client; it is closed once the handler returns,
 * because the handler may still be using its buffers. A handler that runs
 * away (an endless loop) is stopped after SCRIPT_MAX_SECONDS. */
#include "script.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "client.h"
#include "conn.h"
#include "log.h"

#define SCRIPT_MAX_SECONDS 1.0
#define SCRIPT_HOOK_COUNT  100000

struct script {
    int refs; /* the worker's current script, and every client accepted with it */
    lua_State *L;
    int has_connect, has_close, has_read, has_write;
    /* the call in progress */
    struct client *conn;
    struct evbuffer *bufs[3];
    /* What the script gets for bufs[i]: a handle made from a count of calls,
     * never an address, so one kept from an earlier call never matches a
     * later call's buffer, even one that reuses the same memory. */
    void *handles[3];
    uintptr_t calls;
    struct timespec started;
};

static struct script *script_of(lua_State *L)
{
    return *(struct script **)lua_getextraspace(L);
}

static struct evbuffer *script_buffer_arg(lua_State *L, int idx)
{
    struct script *s = script_of(L);
    void *p = lua_touserdata(L, idx);
    if (lua_type(L, idx) == LUA_TLIGHTUSERDATA && p)
        for (int i = 0; i < 3; i++)
            if (s->bufs[i] && s->handles[i] == p)
                return s->bufs[i];
    luaL_argerror(L, idx, "not a buffer of the current call");
    return NULL;
}

static struct client *script_conn_arg(lua_State *L, int idx)
{
    struct script *s = script_of(L);
    void *p = lua_touserdata(L, idx);
    if (lua_type(L, idx) != LUA_TLIGHTUSERDATA || p == NULL || p != s->conn)
        luaL_argerror(L, idx, "not the connection of the current call");
    return p;
}

static int fb_size(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)evbuffer_get_length(script_buffer_arg(L, 1)));
    return 1;
}

static int fb_data(lua_State *L)
{
    struct evbuffer *b = script_buffer_arg(L, 1);
    size_t n = evbuffer_get_length(b);
    lua_pushlstring(L, n ? (const char *)evbuffer_pullup(b, -1) : "", n);
    return 1;
}

static int fb_append(lua_State *L)
{
    struct evbuffer *b = script_buffer_arg(L, 1);
    size_t n;
    const char *str = luaL_checklstring(L, 2, &n);
    evbuffer_add(b, str, n);
    return 0;
}

static int fb_seek(lua_State *L)
{
    struct evbuffer *b = script_buffer_arg(L, 1);
    lua_Integer n = luaL_checkinteger(L, 2);
    if (n < 0)
        return luaL_argerror(L, 2, "negative length");
    evbuffer_drain(b, (size_t)n);
    return 0;
}

static int fc_buffer(lua_State *L)
{
    struct client *c = script_conn_arg(L, 1);
    struct script *s = script_of(L);
    (void)c;
    lua_pushlightuserdata(L, s->handles[2]);
    return 1;
}

static int fc_send(lua_State *L)
{
    struct client *c = script_conn_arg(L, 1);
    size_t n;
    const char *str = luaL_checklstring(L, 2, &n);
    if (!c->dead && !c->closing)
        evbuffer_add(conn_output(c->conn), str, n);
    return 0;
}

static int fc_id(lua_State *L)
{
    struct client *c = script_conn_arg(L, 1);
    lua_pushlstring(L, c->sid, SID_LEN);
    return 1;
}

static int fc_close(lua_State *L)
{
    struct client *c = script_conn_arg(L, 1);
    c->script_close = 1;
    return 0;
}

static int script_open_buffer(lua_State *L)
{
    static const luaL_Reg fns[] = {{"size", fb_size},
                                   {"data", fb_data},
                                   {"append", fb_append},
                                   {"seek", fb_seek},
                                   {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}

static int script_open_connection(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"buffer", fc_buffer}, {"send", fc_send}, {"id", fc_id}, {"close", fc_close}, {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}

static void script_hook(lua_State *L, lua_Debug *ar)
{
    struct script *s = script_of(L);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double el = (double)(now.tv_sec - s->started.tv_sec) + (now.tv_nsec - s->started.tv_nsec) / 1e9;
    if (el > SCRIPT_MAX_SECONDS) {
        char msg[256];
        lua_getinfo(L, "Sl", ar); /* where it was stopped, for the log line */
        snprintf(msg, sizeof(msg), "%s:%d: handler ran longer than %.1f s", ar->short_src,
                 ar->currentline, SCRIPT_MAX_SECONDS);
        luaL_error(L, "%s", msg);
    }
}

static int script_has(lua_State *L, const char *name)
{
    int t = lua_getglobal(L, name);
    lua_pop(L, 1);
    return t == LUA_TFUNCTION;
}

struct script *script_load(const char *path, char *err, size_t errlen)
{
    struct script *s = calloc(1, sizeof(*s));
    if (s)
        s->refs = 1;
    if (!s || !(s->L = luaL_newstate())) {
        snprintf(err, errlen, "%s: out of memory", path);
        free(s);
        return NULL;
    }
    lua_State *L = s->L;
    *(struct script **)lua_getextraspace(L) = s;
    luaL_openlibs(L);
    luaL_requiref(L, "fooking.buffer", script_open_buffer, 0);
    luaL_requiref(L, "fooking.connection", script_open_connection, 0);
    lua_pop(L, 2);
    /* package.path gains the script's own directory, so it can require its helpers. */
    const char *slash = strrchr(path, '/');
    lua_getglobal(L, "package");
    if (slash)
        lua_pushlstring(L, path, (size_t)(slash - path));
    else
        lua_pushliteral(L, ".");
    lua_pushliteral(L, "/?.lua;");
    lua_getfield(L, -3, "path");
    lua_concat(L, 3);
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);
    clock_gettime(CLOCK_MONOTONIC, &s->started);
    lua_sethook(L, script_hook, LUA_MASKCOUNT, SCRIPT_HOOK_COUNT);
    if (luaL_loadfile(L, path) != LUA_OK || lua_pcall(L, 0, 0, 0) != LUA_OK) {
        snprintf(err, errlen, "SCRIPT_FILE %s", lua_tostring(L, -1));
        script_unref(s);
        return NULL;
    }
    s->has_connect = script_has(L, "onConnect");
    s->has_close = script_has(L, "onClose");
    s->has_read = script_has(L, "onRead");
    s->has_write = script_has(L, "onWrite");
    return s;
}

struct script *script_ref(struct script *s)
{
    if (s)
        s->refs++;
    return s;
}

void script_unref(struct script *s)
{
    if (!s || --s->refs > 0)
        return;
    if (s->L)
        lua_close(s->L);
    free(s);
}

int script_has_read(const struct script *s)
{
    return s && s->has_read;
}
int script_has_write(const struct script *s)
{
    return s && s->has_write;
}

/* Calls global `name` with conn [, requestid, input, output]; returns its
 * integer result (0 when it returns none), or SCRIPT_FAILED. */
static int script_call(struct script *s, const char *name, struct client *c, int full,
                       unsigned requestid, struct evbuffer *in, struct evbuffer *out)
{
    lua_State *L = s->L;
    int base = lua_gettop(L);
    s->conn = c;
    s->bufs[0] = in;
    s->bufs[1] = out;
    s->bufs[2] = c->conn ? conn_input(c->conn) : NULL;
    s->calls++;
    for (uintptr_t i = 0; i < 3; i++) /* odd values: no object lives there */
        s->handles[i] = (void *)((s->calls << 3) | (i << 1) | 1u);
    clock_gettime(CLOCK_MONOTONIC, &s->started);
    lua_getglobal(L, name);
    lua_pushlightuserdata(L, c);
    int nargs = 1;
    if (full) {
        lua_pushinteger(L, requestid);
        lua_pushlightuserdata(L, s->handles[0]);
        lua_pushlightuserdata(L, s->handles[1]);
        nargs = 4;
    }
    int rc;
    if (lua_pcall(L, nargs, 1, 0) != LUA_OK) {
        const char *m = lua_tostring(L, -1);
        log_err("script: %s failed for client %s: %s", name, c->sid, m ? m : "(no message)");
        rc = SCRIPT_FAILED;
    } else {
        int isnum;
        lua_Integer v = lua_tointegerx(L, -1, &isnum);
        rc = !isnum ? 0 : v > 0 ? 1 : v < 0 ? -1 : 0; /* only the sign matters */
    }
    lua_settop(L, base);
    s->conn = NULL;
    memset(s->bufs, 0, sizeof(s->bufs));
    return rc;
}

int script_on_connect(struct script *s, struct client *c)
{
    return s->has_connect ? script_call(s, "onConnect", c, 0, 0, NULL, NULL) : 0;
}

void script_on_close(struct script *s, struct client *c)
{
    if (s->has_close)
        script_call(s, "onClose", c, 0, 0, NULL, NULL);
}

int script_on_read(struct script *s, struct client *c, unsigned requestid, struct evbuffer *input,
                   struct evbuffer *output)
{
    return script_call(s, "onRead", c, 1, requestid, input, output);
}

int script_on_write(struct script *s, struct client *c, unsigned requestid, struct evbuffer *input,
                    struct evbuffer *output)
{
    return script_call(s, "onWrite", c, 1, requestid, input, output);
}
