/* config.c - reads a Lua 5.3 config file into struct config.
 *
 * The file is run in a fresh Lua state; the settings are the globals it leaves.
 * Every key is validated here, once, so the rest of the program trusts the
 * struct. Errors are one line naming the file, the key and the problem. */
#include "config.h"
#include "rmsg.h"
#include "bus.h"
#include "nbus.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

struct cfg_ctx {
    lua_State *L;
    const char *file;
    char *err;
    size_t errlen;
    char *dir; /* directory of the config file, for relative paths */
};

/* Keys a config may set. Anything else in UPPER_CASE is probably a typo. */
static const char *const config_keys[] = {
    "HOST",
    "PORT",
    "DAEMONIZE",
    "PID_FILE",
    "LOG_FILE",
    "LOG_LEVEL",
    "ROUTER",
    "USER",
    "GROUP",
    "SERVER_ID",
    "WORKER_NUM",
    "MAX_CLIENT_NUM",
    "MAX_BUFF_SIZE",
    "MAX_OUTPUT_SIZE",
    "ROUTER_HOST",
    "ROUTER_PORT",
    "ROUTER_SECRET",
    "ROUTER_OUTPUT_LIMIT",
    "ROUTER_ANSWER_MAX",
    "HTTP_PORT",
    "HTTP_HOST",
    "HTTP_MAX_BODY",
    "SSL",
    "SSL_CERT",
    "SSL_PKEY",
    "IDLE_TIME",
    "SCRIPT_FILE",
    "PROTOCOL",
    "STATIC_DIR",
    "PING_INTERVAL",
    "HANDSHAKE_TIMEOUT",
    "ALLOWED_ORIGINS",
    "WS_BINARY",
    "WS_SUBPROTOCOLS",
    "BACKEND_SERVER",
    "BACKEND_CONNECT_TIMEOUT",
    "BACKEND_READ_TIMEOUT",
    "BACKEND_KEEPALIVE",
    "BACKEND_MAX_CONNS",
    "BACKEND_QUEUE_SIZE",
    "BACKEND_MULTIPLEX",
    "EVENT_CONNECT",
    "EVENT_CLOSE",
    "FASTCGI_PREFIX",
    "FASTCGI_PARAMS",
    "BUS",
    "BUS_PREFIX",
    "LINK_TIMEOUT",
    "MAX_CONN_PER_IP",
    "SESSION_MAX_SIZE",
    "CHANNELS_PER_CLIENT",
    "BACKEND_QUEUE_TIMEOUT",
    "BACKEND_MAX_FAILS",
    "BACKEND_FAIL_TIMEOUT",
    "GRACEFUL_STOP_TIME",
    "METRICS_HOST",
    "METRICS_PORT",
    NULL,
};

static int cfg_fail(struct cfg_ctx *c, const char *key, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (key)
        snprintf(c->err, c->errlen, "%s: %s %s", c->file, key, msg);
    else
        snprintf(c->err, c->errlen, "%s: %s", c->file, msg);
    return -1;
}

/* Describes the value at the top of the stack for an error message. */
static const char *cfg_got(lua_State *L, char *buf, size_t len)
{
    int t = lua_type(L, -1);
    if (t == LUA_TSTRING)
        snprintf(buf, len, "\"%.60s\"", lua_tostring(L, -1));
    else if (t == LUA_TNUMBER)
        snprintf(buf, len, "%.14g", lua_tonumber(L, -1));
    else if (t == LUA_TBOOLEAN)
        snprintf(buf, len, "%s", lua_toboolean(L, -1) ? "true" : "false");
    else
        snprintf(buf, len, "a %s", lua_typename(L, t));
    return buf;
}

/* Integer key in [min, max]; booleans count as 0/1. Returns 0 or -1. */
static int cfg_int(struct cfg_ctx *c, const char *key, long long def, long long min, long long max,
                   long long *out)
{
    lua_State *L = c->L;
    char got[96];
    int rc = 0;
    lua_getglobal(L, key);
    if (lua_isnil(L, -1)) {
        *out = def;
    } else if (lua_isboolean(L, -1) && min <= 0 && max >= 1) {
        *out = lua_toboolean(L, -1);
    } else if (lua_type(L, -1) == LUA_TNUMBER && lua_isinteger(L, -1)) {
        *out = lua_tointeger(L, -1);
        if (*out < min || *out > max)
            rc = cfg_fail(c, key, "must be an integer from %lld to %lld, got %s", min, max,
                          cfg_got(L, got, sizeof(got)));
    } else if (lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) == floor(lua_tonumber(L, -1))
               && fabs(lua_tonumber(L, -1)) < 9e15) {
        *out = (long long)lua_tonumber(L, -1);
        if (*out < min || *out > max)
            rc = cfg_fail(c, key, "must be an integer from %lld to %lld, got %s", min, max,
                          cfg_got(L, got, sizeof(got)));
    } else {
        rc = cfg_fail(c, key, "must be an integer from %lld to %lld, got %s", min, max,
                      cfg_got(L, got, sizeof(got)));
    }
    lua_pop(L, 1);
    return rc;
}

static int cfg_num(struct cfg_ctx *c, const char *key, double def, double min, double max,
                   double *out)
{
    lua_State *L = c->L;
    char got[96];
    int rc = 0;
    lua_getglobal(L, key);
    if (lua_isnil(L, -1)) {
        *out = def;
    } else if (lua_type(L, -1) == LUA_TNUMBER) {
        *out = lua_tonumber(L, -1);
        if (!(*out >= min && *out <= max))
            rc = cfg_fail(c, key, "must be a number from %g to %g, got %s", min, max,
                          cfg_got(L, got, sizeof(got)));
    } else {
        rc = cfg_fail(c, key, "must be a number from %g to %g, got %s", min, max,
                      cfg_got(L, got, sizeof(got)));
    }
    lua_pop(L, 1);
    return rc;
}

/* String key; *out is malloc'd (NULL when absent and def is NULL). */
static int cfg_str(struct cfg_ctx *c, const char *key, const char *def, char **out)
{
    lua_State *L = c->L;
    char got[96];
    int rc = 0;
    lua_getglobal(L, key);
    if (lua_isnil(L, -1)) {
        *out = def ? strdup(def) : NULL;
    } else if (lua_type(L, -1) == LUA_TSTRING) {
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        if (strlen(s) != len)
            rc = cfg_fail(c, key, "must not contain NUL bytes");
        else
            *out = strdup(s);
    } else {
        rc = cfg_fail(c, key, "must be a string, got %s", cfg_got(L, got, sizeof(got)));
    }
    lua_pop(L, 1);
    return rc;
}

/* A path relative to the config file's directory. "" stays "". */
static int cfg_path(struct cfg_ctx *c, const char *key, const char *def, char **out)
{
    if (cfg_str(c, key, def, out) < 0)
        return -1;
    char *p = *out;
    /* "stdout" and "stderr" are LOG_FILE's stream names, not file names. */
    if (p == NULL || p[0] == '\0' || p[0] == '/' || strcmp(p, "stdout") == 0
        || strcmp(p, "stderr") == 0)
        return 0;
    size_t n = strlen(c->dir) + strlen(p) + 2;
    char *full = malloc(n);
    if (!full)
        return cfg_fail(c, key, "out of memory");
    snprintf(full, n, "%s/%s", c->dir, p);
    free(p);
    *out = full;
    return 0;
}

/* A table of strings, as a NULL-terminated array; NULL when absent. */
static int cfg_strlist(struct cfg_ctx *c, const char *key, char ***out)
{
    lua_State *L = c->L;
    char got[96];
    *out = NULL;
    lua_getglobal(L, key);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    if (lua_type(L, -1) == LUA_TSTRING) { /* one string is a list of one */
        char **list = calloc(2, sizeof(char *));
        if (!list || !(list[0] = strdup(lua_tostring(L, -1)))) {
            free(list);
            lua_pop(L, 1);
            return cfg_fail(c, key, "out of memory");
        }
        *out = list;
        lua_pop(L, 1);
        return 0;
    }
    if (!lua_istable(L, -1)) {
        int rc =
            cfg_fail(c, key, "must be a table of strings, got %s", cfg_got(L, got, sizeof(got)));
        lua_pop(L, 1);
        return rc;
    }
    size_t n = lua_rawlen(L, -1);
    char **list = calloc(n + 1, sizeof(char *));
    if (!list) {
        lua_pop(L, 1);
        return cfg_fail(c, key, "out of memory");
    }
    *out = list;
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, (lua_Integer)i);
        if (lua_type(L, -1) != LUA_TSTRING) {
            int rc = cfg_fail(c, key, "must be a table of strings, item %zu is %s", i,
                              cfg_got(L, got, sizeof(got)));
            lua_pop(L, 2);
            return rc;
        }
        list[i - 1] = strdup(lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return 0;
}

/* "host:port" (port 1..65535) or "unix:/path". */
static int cfg_addr_valid(const char *a)
{
    if (strncmp(a, "unix:", 5) == 0)
        return a[5] == '/' && strlen(a + 5) < 108;
    const char *colon = strrchr(a, ':');
    if (colon == NULL || colon == a)
        return 0;
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    return errno == 0 && *end == '\0' && colon[1] != '\0' && port >= 1 && port <= 65535;
}

static int cfg_backend_add(struct cfg_ctx *c, struct config *cfg, const char *addr, long long w)
{
    if (!cfg_addr_valid(addr))
        return cfg_fail(c, "BACKEND_SERVER", "entry \"%s\" must be \"host:port\" or \"unix:/path\"",
                        addr);
    if (cfg->nbackends >= CONFIG_MAX_BACKENDS)
        return cfg_fail(c, "BACKEND_SERVER", "has more than %d servers", CONFIG_MAX_BACKENDS);
    if (w < 1 || w > 1000)
        return cfg_fail(c, "BACKEND_SERVER",
                        "weight of \"%s\" must be an integer from 1 to 1000, got %lld", addr, w);
    struct cfg_backend *nb = realloc(cfg->backends, (cfg->nbackends + 1) * sizeof(*nb));
    if (!nb)
        return cfg_fail(c, "BACKEND_SERVER", "out of memory");
    cfg->backends = nb;
    nb[cfg->nbackends].addr = strdup(addr);
    nb[cfg->nbackends].weight = (int)w;
    cfg->nbackends++;
    return 0;
}

static int cfg_backends(struct cfg_ctx *c, struct config *cfg)
{
    lua_State *L = c->L;
    char got[96];
    int rc = 0;
    lua_getglobal(L, "BACKEND_SERVER");
    if (lua_type(L, -1) == LUA_TSTRING) {
        rc = cfg_backend_add(c, cfg, lua_tostring(L, -1), 1);
    } else if (lua_istable(L, -1)) {
        lua_pushnil(L);
        while (rc == 0 && lua_next(L, -2) != 0) {
            if (lua_type(L, -2) == LUA_TSTRING && lua_isinteger(L, -1)) {
                rc = cfg_backend_add(c, cfg, lua_tostring(L, -2), lua_tointeger(L, -1));
            } else if (lua_type(L, -2) == LUA_TNUMBER && lua_type(L, -1) == LUA_TSTRING) {
                rc = cfg_backend_add(c, cfg, lua_tostring(L, -1), 1); /* {"a:1", "b:2"} */
            } else {
                rc = cfg_fail(c, "BACKEND_SERVER",
                              "must be a table of [\"host:port\"] = weight, got an entry %s",
                              cfg_got(L, got, sizeof(got)));
            }
            lua_pop(L, 1);
        }
        if (rc == 0 && cfg->nbackends == 0)
            rc = cfg_fail(c, "BACKEND_SERVER", "must name at least one server");
    } else if (lua_isnil(L, -1)) {
        rc =
            cfg_fail(c, "BACKEND_SERVER", "is required (\"host:port\", \"unix:/path\" or a table)");
    } else {
        rc = cfg_fail(c, "BACKEND_SERVER",
                      "must be \"host:port\", \"unix:/path\" or a table, got %s",
                      cfg_got(L, got, sizeof(got)));
    }
    lua_pop(L, 1);
    return rc;
}

static int cfg_params(struct cfg_ctx *c, struct config *cfg)
{
    lua_State *L = c->L;
    char got[96];
    int rc = 0;
    lua_getglobal(L, "FASTCGI_PARAMS");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    if (!lua_istable(L, -1)) {
        rc = cfg_fail(c, "FASTCGI_PARAMS", "must be a table of name = value, got %s",
                      cfg_got(L, got, sizeof(got)));
        lua_pop(L, 1);
        return rc;
    }
    lua_pushnil(L);
    while (rc == 0 && lua_next(L, -2) != 0) {
        int vt = lua_type(L, -1);
        if (lua_type(L, -2) != LUA_TSTRING || (vt != LUA_TSTRING && vt != LUA_TNUMBER)) {
            rc = cfg_fail(c, "FASTCGI_PARAMS", "must map string names to string values, got %s",
                          cfg_got(L, got, sizeof(got)));
        } else {
            struct cfg_param *np = realloc(cfg->fastcgi_params, (cfg->nparams + 1) * sizeof(*np));
            if (!np) {
                rc = cfg_fail(c, "FASTCGI_PARAMS", "out of memory");
            } else {
                cfg->fastcgi_params = np;
                lua_pushvalue(L, -1); /* tostring on a copy: never convert the key in place */
                np[cfg->nparams].name = strdup(lua_tostring(L, -3));
                np[cfg->nparams].value = strdup(lua_tostring(L, -1));
                lua_pop(L, 1);
                cfg->nparams++;
            }
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return rc;
}

static int cfg_is_known(const char *key)
{
    for (int i = 0; config_keys[i]; i++)
        if (strcmp(config_keys[i], key) == 0)
            return 1;
    return 0;
}

static int cfg_is_upper(const char *s)
{
    if (!isupper((unsigned char)*s)) /* _G, _VERSION are Lua's own */
        return 0;
    for (; *s; s++)
        if (!(isupper((unsigned char)*s) || isdigit((unsigned char)*s) || *s == '_'))
            return 0;
    return 1;
}

static void cfg_warn_unknown(struct cfg_ctx *c)
{
    lua_State *L = c->L;
    lua_pushglobaltable(L);
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
        if (lua_type(L, -2) == LUA_TSTRING) {
            const char *k = lua_tostring(L, -2);
            if (cfg_is_upper(k) && !cfg_is_known(k))
                fprintf(stderr, "%s: warning: unknown key %s (ignored; a typo?)\n", c->file, k);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

static int cfg_gateway(struct cfg_ctx *c, struct config *cfg)
{
    long long v;
    char *s = NULL;
#define INT(key, def, min, max, field)                                                             \
    do {                                                                                           \
        if (cfg_int(c, key, def, min, max, &v) < 0)                                                \
            return -1;                                                                             \
        cfg->field = v;                                                                            \
    } while (0)
    INT("SERVER_ID", 0, 0, 8191, server_id);
    INT("WORKER_NUM", 1, 1, 32, worker_num);
    INT("MAX_CLIENT_NUM", 0, 0, 10000000, max_client_num);
    INT("MAX_BUFF_SIZE", 65536, 1, 1LL << 30, max_buff_size);
    /* A message must fit a 32-bit length prefix and a client's output limit. */
    INT("MAX_OUTPUT_SIZE", 4LL << 20, 4096, 1LL << 30, max_output_size);
    INT("IDLE_TIME", 0, 0, 86400 * 365, idle_time);
    INT("SSL", 0, 0, 1, ssl);
    INT("PING_INTERVAL", 30, 0, 86400, ping_interval);
    INT("HANDSHAKE_TIMEOUT", 10, 1, 3600, handshake_timeout);
    INT("WS_BINARY", 0, 0, 1, ws_binary);
    INT("BACKEND_KEEPALIVE", 0, 0, 100000, backend_keepalive);
    INT("BACKEND_MAX_CONNS", 64, 1, 100000, backend_max_conns);
    INT("BACKEND_QUEUE_SIZE", 4096, 0, 10000000, backend_queue_size);
    INT("BACKEND_MULTIPLEX", 0, 0, 1, backend_multiplex);
    INT("EVENT_CONNECT", 0, 0, 1, event_connect);
    INT("EVENT_CLOSE", 1, 0, 1, event_close);
    INT("ROUTER_PORT", 0, 0, 65535, router_port);
    INT("MAX_CONN_PER_IP", 0, 0, 10000000, max_conn_per_ip);
    /* A session's data travels in a GW_ANSWER record: at most RMSG_MAX_SESSION. */
    INT("SESSION_MAX_SIZE", 4096, 0, RMSG_MAX_SESSION, session_max_size);
    INT("CHANNELS_PER_CLIENT", 128, 1, 1000000, channels_per_client);
    INT("BACKEND_MAX_FAILS", 1, 0, 1000, backend_max_fails);
    INT("GRACEFUL_STOP_TIME", 10, 0, 3600, graceful_stop_time);
    INT("METRICS_PORT", 0, 0, 65535, metrics_port);
#undef INT
    if (cfg_num(c, "BACKEND_CONNECT_TIMEOUT", 5, 0.001, 3600, &cfg->backend_connect_timeout) < 0
        || cfg_num(c, "BACKEND_READ_TIMEOUT", 10, 0.001, 86400, &cfg->backend_read_timeout) < 0
        || cfg_num(c, "BACKEND_QUEUE_TIMEOUT", 10, 0.001, 86400, &cfg->backend_queue_timeout) < 0
        || cfg_num(c, "BACKEND_FAIL_TIMEOUT", 10, 0.001, 86400, &cfg->backend_fail_timeout) < 0)
        return -1;
    if (cfg->max_buff_size > cfg->max_output_size)
        return cfg_fail(c, "MAX_BUFF_SIZE", "must not exceed MAX_OUTPUT_SIZE (%zu), got %zu",
                        cfg->max_output_size, cfg->max_buff_size);
    if (cfg_str(c, "ROUTER_HOST", NULL, &cfg->router_host) < 0
        || cfg_str(c, "METRICS_HOST", "127.0.0.1", &cfg->metrics_host) < 0)
        return -1;
    if (cfg->router_host && cfg->router_port == 0)
        return cfg_fail(c, "ROUTER_PORT", "is required when ROUTER_HOST is set");
    if (cfg_path(c, "SSL_CERT", NULL, &cfg->ssl_cert) < 0
        || cfg_path(c, "SSL_PKEY", NULL, &cfg->ssl_pkey) < 0
        || cfg_path(c, "SCRIPT_FILE", NULL, &cfg->script_file) < 0
        || cfg_path(c, "STATIC_DIR", NULL, &cfg->static_dir) < 0)
        return -1;
    if (cfg->ssl && (!cfg->ssl_cert || !cfg->ssl_pkey))
        return cfg_fail(c, cfg->ssl_cert ? "SSL_PKEY" : "SSL_CERT", "is required when SSL = 1");
    if (cfg_str(c, "PROTOCOL", "length", &s) < 0)
        return -1;
    if (strcmp(s, "length") == 0) {
        cfg->protocol = PROTO_LENGTH;
    } else if (strcmp(s, "websocket") == 0) {
        cfg->protocol = PROTO_WEBSOCKET;
    } else {
        int rc = cfg_fail(c, "PROTOCOL", "must be \"length\" or \"websocket\", got \"%s\"", s);
        free(s);
        return rc;
    }
    free(s);
    if (cfg_strlist(c, "ALLOWED_ORIGINS", &cfg->allowed_origins) < 0
        || cfg_strlist(c, "WS_SUBPROTOCOLS", &cfg->ws_subprotocols) < 0)
        return -1;
    if (cfg_str(c, "FASTCGI_PREFIX", "", &cfg->fastcgi_prefix) < 0)
        return -1;
    if (cfg_backends(c, cfg) < 0 || cfg_params(c, cfg) < 0)
        return -1;
    return 0;
}

int config_load(struct config *cfg, const char *path, char *err, size_t errlen)
{
    struct cfg_ctx c = {.file = path, .err = err, .errlen = errlen};
    long long v;
    int rc = -1;

    memset(cfg, 0, sizeof(*cfg));
    cfg->file = strdup(path);
    const char *slash = strrchr(path, '/');
    {
        /* Absolute, so relative paths in the config still work after DAEMONIZE's chdir. */
        char *d = slash ? strndup(path, (size_t)(slash - path) + (slash == path)) : strdup(".");
        c.dir = d ? realpath(d, NULL) : NULL;
        if (c.dir == NULL && d)
            c.dir = d;
        else
            free(d);
    }

    c.L = luaL_newstate();
    if (c.L == NULL || cfg->file == NULL || c.dir == NULL) {
        cfg_fail(&c, NULL, "out of memory");
        goto done;
    }
    luaL_openlibs(c.L);
    if (luaL_loadfile(c.L, path) != LUA_OK || lua_pcall(c.L, 0, 0, 0) != LUA_OK) {
        const char *m = lua_tostring(c.L, -1);
        /* Lua's message starts with the file name already; keep it one line. */
        snprintf(err, errlen, "%s", m ? m : "cannot load config");
        for (char *p = err; *p; p++)
            if (*p == '\n')
                *p = ' ';
        if (strncmp(err, path, strlen(path)) != 0) {
            char tmp[512];
            snprintf(tmp, sizeof(tmp), "%s", err);
            snprintf(err, errlen, "%s: %s", path, tmp);
        }
        goto done;
    }
    if (cfg_int(&c, "ROUTER", 0, 0, 1, &v) < 0)
        goto done;
    cfg->router = (int)v;
    if (cfg_str(&c, "HOST", "0.0.0.0", &cfg->host) < 0)
        goto done;
    lua_getglobal(c.L, "PORT");
    int noport = lua_isnil(c.L, -1);
    lua_pop(c.L, 1);
    if (noport) {
        cfg_fail(&c, "PORT", "is required (an integer from 1 to 65535)");
        goto done;
    }
    if (cfg_int(&c, "PORT", 0, 1, 65535, &v) < 0)
        goto done;
    cfg->port = (int)v;
    if (cfg_int(&c, "DAEMONIZE", 0, 0, 1, &v) < 0)
        goto done;
    cfg->daemonize = (int)v;
    if (cfg_int(&c, "LOG_LEVEL", 2, 1, 3, &v) < 0)
        goto done;
    cfg->log_level = (int)v;
    if (cfg_path(&c, "LOG_FILE", "stdout", &cfg->log_file) < 0
        || cfg_path(&c, "PID_FILE", NULL, &cfg->pid_file) < 0
        || cfg_str(&c, "USER", NULL, &cfg->user) < 0 || cfg_str(&c, "GROUP", NULL, &cfg->group) < 0
        || cfg_str(&c, "ROUTER_SECRET", NULL, &cfg->router_secret) < 0
        || cfg_str(&c, "BUS", NULL, &cfg->bus) < 0
        || cfg_str(&c, "BUS_PREFIX", "fooking:", &cfg->bus_prefix) < 0)
        goto done;
    if (nbus_is_nats(cfg->bus)) {
        char berr[160];
        if (nbus_parse_url(cfg->bus, berr, sizeof(berr)) < 0) {
            cfg_fail(&c, "BUS",
                     "must be \"nats://[user:password@|token@]host:port[,host:port...]\": %s, "
                     "got \"%s\"",
                     berr, cfg->bus);
            goto done;
        }
        /* Subjects: no wildcard, no space, no empty token. */
        const char *p = cfg->bus_prefix;
        int bad = p[0] == '.' || strstr(p, "..") != NULL;
        for (; *p; p++)
            bad |= *p == '*' || *p == '>' || (unsigned char)*p <= ' ' || (unsigned char)*p >= 127;
        if (bad || strlen(cfg->bus_prefix) > 127) {
            cfg_fail(&c, "BUS_PREFIX",
                     "with a NATS BUS, must be up to 127 printable bytes without spaces, '*', "
                     "'>', a leading '.' or \"..\", got \"%s\"",
                     cfg->bus_prefix);
            goto done;
        }
    } else if (cfg->bus) {
        char host[256], pw[256], berr[128];
        int port, db;
        if (bus_parse_url(cfg->bus, host, sizeof(host), &port, pw, sizeof(pw), &db, berr,
                          sizeof(berr))
            < 0) {
            cfg_fail(
                &c, "BUS",
                "must be \"redis://[:password@]host:port[/db]\" or \"nats://...\": %s, got \"%s\"",
                berr, cfg->bus);
            goto done;
        }
    }
    if (cfg->router_secret && strlen(cfg->router_secret) > CONFIG_MAX_SECRET) {
        cfg_fail(&c, "ROUTER_SECRET", "must be at most %d bytes, got %zu", CONFIG_MAX_SECRET,
                 strlen(cfg->router_secret));
        goto done;
    }
    if (cfg_int(&c, "ROUTER_OUTPUT_LIMIT", 64LL << 20, 65536, 1LL << 34, &v) < 0)
        goto done;
    cfg->router_output_limit = (size_t)v;
    if (cfg_int(&c, "ROUTER_ANSWER_MAX", 16LL << 20, 65536, 1LL << 30, &v) < 0)
        goto done;
    cfg->router_answer_max = (size_t)v;
    if (cfg_int(&c, "LINK_TIMEOUT", 15, 0, 3600, &v) < 0)
        goto done;
    cfg->link_timeout = (int)v;
    if (cfg_int(&c, "HTTP_PORT", 0, 0, 65535, &v) < 0)
        goto done;
    cfg->http_port = (int)v;
    if (cfg->http_port != 0 && cfg->http_port == cfg->port) {
        cfg_fail(&c, "HTTP_PORT", "must differ from PORT (%d)", cfg->port);
        goto done;
    }
    if (cfg_str(&c, "HTTP_HOST", cfg->host, &cfg->http_host) < 0)
        goto done;
    if (cfg_int(&c, "HTTP_MAX_BODY", 1LL << 20, 1024, 64LL << 20, &v) < 0)
        goto done;
    cfg->http_max_body = (size_t)v;
    if (!cfg->router && cfg_gateway(&c, cfg) < 0)
        goto done;
    cfg_warn_unknown(&c);
    rc = 0;
done:
    if (c.L)
        lua_close(c.L);
    free(c.dir);
    if (rc < 0)
        config_free(cfg);
    return rc;
}

int config_has_param(const struct config *cfg, const char *name)
{
    for (int i = 0; i < cfg->nparams; i++)
        if (strcmp(cfg->fastcgi_params[i].name, name) == 0)
            return 1;
    return 0;
}

static void cfg_free_list(char **list)
{
    if (!list)
        return;
    for (char **p = list; *p; p++)
        free(*p);
    free(list);
}

void config_free(struct config *cfg)
{
    free(cfg->file);
    free(cfg->host);
    free(cfg->pid_file);
    free(cfg->log_file);
    free(cfg->user);
    free(cfg->group);
    free(cfg->router_host);
    free(cfg->metrics_host);
    free(cfg->router_secret);
    free(cfg->ssl_cert);
    free(cfg->ssl_pkey);
    free(cfg->script_file);
    free(cfg->static_dir);
    cfg_free_list(cfg->allowed_origins);
    cfg_free_list(cfg->ws_subprotocols);
    for (int i = 0; i < cfg->nbackends; i++)
        free(cfg->backends[i].addr);
    free(cfg->backends);
    free(cfg->fastcgi_prefix);
    for (int i = 0; i < cfg->nparams; i++) {
        free(cfg->fastcgi_params[i].name);
        free(cfg->fastcgi_params[i].value);
    }
    free(cfg->fastcgi_params);
    free(cfg->bus);
    free(cfg->bus_prefix);
    free(cfg->http_host);
    memset(cfg, 0, sizeof(*cfg));
}
