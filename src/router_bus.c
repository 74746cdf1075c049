/* router_bus.c - the router in bus mode (BUS = "redis://...", DESIGN §9):
 * stateless. It keeps no sessions and no links; each backend command is
 * published on Redis, where the gateway workers subscribe: KICK, SEND_MSG,
 * CH_ADD and CH_DEL on gw:<server>:<worker> of each SID's worker (found in the
 * SID itself, no lookup), SEND_ALL on "all", CH_PUB on ch:<name>. INFO is
 * answered from the presence the workers keep in Redis. Backend API v2: BIND,
 * UNBIND and SESSION_SET go like SEND_MSG, SEND_ALL_EX like SEND_ALL, CH_PUB_EX
 * like CH_PUB; SEND_UID and KICK_UID and the queries are Lua scripts over the
 * uids, data and members the workers keep in Redis too. A gateway that
 * connects here (AUTH, CONN, ...) is misconfigured and is told so.
 * router.c owns the connections; this file only implements the command table
 * router.c picks in bus mode (router_cmd.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <hiredis/hiredis.h>

#include "bus.h"
#include "hmap.h"
#include "log.h"
#include "rmsg.h"
#include "router_cmd.h"
#include "sid.h"

struct evbuffer *router_bus_message(uint16_t type, const void *sp, size_t slen,
                                    struct evbuffer *payload, const void *d, size_t dlen)
{
    unsigned char hdr[RMSG_HEADER_LEN];
    struct evbuffer *msg = evbuffer_new();
    if (msg == NULL)
        return NULL;
    if (payload != NULL)
        dlen = evbuffer_get_length(payload);
    rmsg_encode_header(hdr, type, (uint16_t)slen, (uint32_t)dlen);
    evbuffer_add(msg, hdr, sizeof(hdr));
    evbuffer_add(msg, sp, slen);
    if (payload != NULL)
        evbuffer_add_buffer_reference(msg, payload);
    else
        evbuffer_add(msg, d, dlen);
    return msg;
}

/* Publishes header + S + D on <prefix><channel>. */
static void router_bus_publish(struct bus *bus, const char *ch, size_t chlen, uint16_t type,
                               const void *sp, size_t slen, struct evbuffer *payload, const void *d,
                               size_t dlen)
{
    struct evbuffer *msg = router_bus_message(type, sp, slen, payload, d, dlen);
    if (msg == NULL)
        return;
    size_t n = evbuffer_get_length(msg);
    bus_publish(bus, ch, chlen, evbuffer_pullup(msg, -1), n, NULL, 0);
    evbuffer_free(msg);
}

static void router_bus_group_free(void *g)
{
    evbuffer_free(g);
}

void router_sids_by_worker(const unsigned char *s, size_t slen, router_group_fn *fn, void *arg)
{
    struct hmap *groups = hmap_new(8);
    if (groups == NULL)
        return;
    for (size_t off = 0; off + RMSG_SID_LEN <= slen; off += RMSG_SID_LEN) {
        unsigned server, worker;
        char sid[SID_LEN];
        memcpy(sid, s + off, SID_LEN);
        if (sid_decode(sid, NULL, &server, &worker, NULL) < 0)
            continue; /* not one of ours: no gateway can hold it */
        unsigned char key[3] = {(unsigned char)(server >> 8), (unsigned char)server,
                                (unsigned char)worker};
        struct evbuffer *g = hmap_get(groups, key, sizeof(key));
        if (g == NULL) {
            if ((g = evbuffer_new()) == NULL || hmap_put(groups, key, sizeof(key), g, NULL) < 0) {
                if (g)
                    evbuffer_free(g);
                continue;
            }
        }
        evbuffer_add(g, sid, SID_LEN);
    }
    struct hmap_iter it;
    const void *k;
    void *v;
    hmap_iter_init(&it);
    while (hmap_next(groups, &it, &k, NULL, &v)) {
        const unsigned char *key = k;
        size_t n = evbuffer_get_length(v);
        fn(arg, (unsigned)key[0] << 8 | key[1], key[2], evbuffer_pullup(v, -1), n);
    }
    hmap_free(groups, router_bus_group_free);
}

struct router_bus_split {
    struct rconn *c;
    const struct rmsg *m;
    struct evbuffer *payload;
};

static void router_bus_split_one(void *arg, unsigned server, unsigned worker,
                                 const unsigned char *sids, size_t slen)
{
    struct router_bus_split *sp = arg;
    char ch[32];
    int chlen = snprintf(ch, sizeof(ch), "gw:%u:%u", server, worker);
    router_bus_publish(router_conn_bus(sp->c), ch, (size_t)chlen, sp->m->type, sids, slen,
                       sp->payload, sp->m->d, sp->m->len);
}

/* KICK, SEND_MSG, CH_ADD, CH_DEL: one publish per gateway worker, found from
 * the server and worker ids inside each SID (no lookup, no state). */
static void router_bus_split(struct rconn *c, const struct rmsg *m, struct evbuffer *payload)
{
    struct router_bus_split sp = {c, m, payload};
    router_sids_by_worker(m->s, m->slen, router_bus_split_one, &sp);
    log_debug("router: %s: %s published", router_conn_peer(c), rmsg_type_name(m->type));
}

/* SEND_ALL, and SEND_ALL_EX with its SIDs to exclude in S: on "all". */
static void router_bus_send_all(struct rconn *c, const struct rmsg *m, struct evbuffer *payload)
{
    router_bus_publish(router_conn_bus(c), "all", 3, m->type, m->s, m->slen, payload, NULL, 0);
}

/* CH_PUB (S = the channel) and CH_PUB_EX (S = u8 n, channel, SIDs to
 * exclude): on ch:<name>, where the workers with members listen. */
static void router_bus_ch_pub(struct rconn *c, const struct rmsg *m, struct evbuffer *payload)
{
    char ch[RMSG_MAX_CHANNEL + 4];
    struct rmsg_ch_ex ex = {m->s, m->slen, NULL, 0};
    if (m->type == RMSG_CH_PUB_EX && rmsg_ch_ex_parse(m->s, m->slen, &ex) != RMSG_OK)
        return; /* validated before: cannot happen */
    memcpy(ch, "ch:", 3);
    memcpy(ch + 3, ex.channel, ex.chlen);
    router_bus_publish(router_conn_bus(c), ch, ex.chlen + 3u, m->type, m->s, m->slen, payload, NULL,
                       0);
}

static void router_bus_gateway_msg(struct rconn *c, const struct rmsg *m, struct evbuffer *payload)
{
    log_err("router: %s: %s from a gateway, but this router runs on the bus (BUS): gateways "
            "must set BUS too; closing",
            router_conn_peer(c), rmsg_type_name(m->type));
    router_conn_kill(c);
}

/* INFO from the presence the gateway workers keep in Redis, in one round
 * trip: the heartbeat of every live worker, the union of their channels and
 * the distinct uids their sessions are bound to (sidu:<server>:<worker>).
 * Workers are found in the registry set <prefix>workers, never with KEYS: the
 * bus may share a Redis with millions of other keys, and KEYS would block it
 * for all of them. A member whose heartbeat expired (a worker that died
 * without a clean stop) is skipped and removed here. */
static const char router_bus_info_lua[] =
    "local p = ARGV[1]\n"
    "local rows, seen, nch, total, uids, nu = {}, {}, 0, 0, {}, 0\n"
    "for _, id in ipairs(redis.call('SMEMBERS', p .. 'workers')) do\n"
    "  local v = redis.call('GET', p .. 'hb:' .. id)\n"
    "  if not v then\n"
    "    redis.call('SREM', p .. 'workers', id)\n"
    "  else\n"
    "    local s, w = string.match(id, '^(%d+):(%d+)$')\n"
    "    local cl, ch = string.match(v, '^(%d+) (%d+)')\n"
    "    if s and cl then\n"
    "      rows[#rows + 1] = {tonumber(s), tonumber(w), cl, ch}\n"
    "      total = total + tonumber(cl)\n"
    "      for _, c in ipairs(redis.call('SMEMBERS', p .. 'chans:' .. id)) do\n"
    "        if not seen[c] then seen[c] = true; nch = nch + 1 end\n"
    "      end\n"
    "      for _, u in ipairs(redis.call('HVALS', p .. 'sidu:' .. id)) do\n"
    "        if not uids[u] then uids[u] = true; nu = nu + 1 end\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "table.sort(rows, function(a, b) return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2]) end)\n"
    "local out = {'clients: ' .. total .. '\\r\\nchannels: ' .. nch .. '\\r\\nuids: ' .. nu .. "
    "'\\r\\n'}\n"
    "for _, r in ipairs(rows) do\n"
    "  out[#out + 1] = 'gateway: ' .. r[1] .. '\\t' .. r[2] .. '\\t' .. r[3] .. '\\t' .. r[4] .. "
    "'\\r\\n'\n"
    "end\n"
    "return table.concat(out)\n";

/* What the INFO reply comes back to: its connection, and its place among
 * that connection's answers. */
struct router_bus_wait {
    struct rconn *c;
    struct ranswer *a;
};

static void router_bus_info_reply(redisAsyncContext *ac, void *rep, void *privdata)
{
    struct router_bus_wait *w = privdata;
    struct rconn *c = w->c;
    struct ranswer *a = w->a;
    redisReply *reply = rep;
    const char *text = "";
    size_t n = 0;

    (void)ac;
    free(w);
    if (!router_conn_release(c))
        return;
    if (reply && reply->type == REDIS_REPLY_STRING) {
        text = reply->str;
        n = reply->len;
    } else {
        log_err("router: %s: INFO from the bus failed: %s", router_conn_peer(c),
                reply && reply->type == REDIS_REPLY_ERROR ? reply->str : "no reply");
    }
    router_answer_fill(c, a, RMSG_INFO, text, n);
}

static void router_bus_info(struct rconn *c, const struct rmsg *m, struct evbuffer *payload)
{
    struct bus *bus = router_conn_bus(c);
    const char *prefix = bus_prefix(bus);
    const char *argv[4] = {"EVAL", router_bus_info_lua, "0", prefix};
    size_t argvlen[4] = {4, sizeof(router_bus_info_lua) - 1, 1, strlen(prefix)};
    struct router_bus_wait *w = malloc(sizeof(*w));

    if (w == NULL) {
        log_err("router: %s: out of memory asking the bus for INFO, closing", router_conn_peer(c));
        router_conn_kill(c);
        return;
    }
    w->c = c;
    if ((w->a = router_answer_reserve(c)) == NULL) {
        free(w);
        return;
    }
    if (bus_command_argv(bus, router_bus_info_reply, w, 4, argv, argvlen) < 0) {
        /* No answer beats a made-up one: the backend sees the failure. */
        log_err("router: %s: INFO: the bus is not connected, closing", router_conn_peer(c));
        free(w);
        router_conn_kill(c);
        return;
    }
    router_conn_hold(c);
}

/* ---- backend API v2 ----
 *
 * The gateway workers keep, next to their presence (buslink.c):
 *   sidu:<server>:<worker>  hash SID -> uid of its bound sessions
 *   sess:<server>:<worker>  hash SID -> session data
 *   u:<uid>                 set of the SIDs bound to uid, all workers
 *   chm:<channel>           set of the channel's member SIDs, all workers
 * A SID in u: or chm: counts only while its worker (read out of the SID) has a
 * heartbeat and still lists it (sids:, and for u: the uid in sidu:); the
 * scripts below skip and remove the others, so what a dead worker left goes
 * from the answers with its heartbeat or its successor's rewrite. Each script
 * is one EVAL: one round trip, atomic against the workers' writes. */

#define ROUTER_BUS_LUA_COMMON                                                                      \
    BUS_LUA_WID                                                                                    \
    "local p = ARGV[1]\n"                                                                          \
    "local hb = {}\n"                                                                              \
    "local function alive(id)\n"                                                                   \
    "  local v = hb[id]\n"                                                                         \
    "  if v == nil then v = redis.call('EXISTS', p .. 'hb:' .. id) == 1; hb[id] = v end\n"         \
    "  return v\n"                                                                                 \
    "end\n"                                                                                        \
    "local function online(s)\n"                                                                   \
    "  local id = wid(s)\n"                                                                        \
    "  if id and alive(id) and redis.call('SISMEMBER', p .. 'sids:' .. id, s) == 1 then\n"         \
    "    return id end\n"                                                                          \
    "  return nil\n"                                                                               \
    "end\n"                                                                                        \
    "local function bound(uid)\n"                                                                  \
    "  return function(s)\n"                                                                       \
    "    local id = online(s)\n"                                                                   \
    "    if id and redis.call('HGET', p .. 'sidu:' .. id, s) == uid then return id end\n"          \
    "    return nil\n"                                                                             \
    "  end\n"                                                                                      \
    "end\n"                                                                                        \
    "local function live(k, ok)\n"                                                                 \
    "  local out = {}\n"                                                                           \
    "  for _, s in ipairs(redis.call('SMEMBERS', k)) do\n"                                         \
    "    local id = ok(s)\n"                                                                       \
    "    if id then out[#out + 1] = {s, id} else redis.call('SREM', k, s) end\n"                   \
    "  end\n"                                                                                      \
    "  return out\n"                                                                               \
    "end\n"                                                                                        \
    "local function u16(n) return string.char(math.floor(n / 256) % 256, n % 256) end\n"           \
    "local function u32(n) return u16(math.floor(n / 65536)) .. u16(n % 65536) end\n"

/* SEND_UID, KICK_UID: ARGV prefix, type, D, then the uids. One PUBLISH per
 * worker holding any of them, on gw:<server>:<worker>, with S cut down to
 * the uids it holds. */
static const char router_bus_uids_lua[] = ROUTER_BUS_LUA_COMMON
    "local t, d = tonumber(ARGV[2]), ARGV[3]\n"
    "local groups, order, done = {}, {}, {}\n"
    "for i = 4, #ARGV do\n"
    "  local uid = ARGV[i]\n"
    "  if not done[uid] then\n"
    "    done[uid] = true\n"
    "    local got = {}\n"
    "    for _, e in ipairs(live(p .. 'u:' .. uid, bound(uid))) do\n"
    "      local id = e[2]\n"
    "      if not got[id] then\n"
    "        got[id] = true\n"
    "        local g = groups[id]\n"
    "        if not g then g = {}; groups[id] = g; order[#order + 1] = id end\n"
    "        g[#g + 1] = string.char(#uid) .. uid\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "for _, id in ipairs(order) do\n"
    "  local s = table.concat(groups[id])\n"
    "  redis.call('PUBLISH', p .. 'gw:' .. id, u16(t) .. u16(#s) .. u32(#d) .. s .. d)\n"
    "end\n"
    "return #order\n";

/* The queries: ARGV prefix, ROUTER_ANSWER_MAX, then the query's S. Each
 * returns the answer's D, or the integer 0 when it would pass the maximum. */
static const char router_bus_is_online_lua[] = ROUTER_BUS_LUA_COMMON
    "local s, out = ARGV[3], {}\n"
    "for i = 1, #s, 16 do out[#out + 1] = online(string.sub(s, i, i + 15)) and '\\1' or '\\0' end\n"
    "return table.concat(out)\n";

static const char router_bus_uid_count_lua[] =
    ROUTER_BUS_LUA_COMMON "return u32(#live(p .. 'u:' .. ARGV[3], bound(ARGV[3])))\n";

static const char router_bus_uid_sids_lua[] =
    ROUTER_BUS_LUA_COMMON "local l, out = live(p .. 'u:' .. ARGV[3], bound(ARGV[3])), {}\n"
                          "if #l * 16 > tonumber(ARGV[2]) then return 0 end\n"
                          "for i, e in ipairs(l) do out[i] = e[1] end\n"
                          "return table.concat(out)\n";

static const char router_bus_sid_uid_lua[] =
    ROUTER_BUS_LUA_COMMON "local id = online(ARGV[3])\n"
                          "if not id then return '' end\n"
                          "return redis.call('HGET', p .. 'sidu:' .. id, ARGV[3]) or ''\n";

static const char router_bus_session_get_lua[] = ROUTER_BUS_LUA_COMMON
    "local id = online(ARGV[3])\n"
    "if not id then return '\\0' end\n"
    "return '\\1' .. (redis.call('HGET', p .. 'sess:' .. id, ARGV[3]) or '')\n";

static const char router_bus_ch_count_lua[] =
    ROUTER_BUS_LUA_COMMON "return u32(#live(p .. 'chm:' .. ARGV[3], online))\n";

/* CH_MEMBERS (SID, u8 uid length, uid) and CH_SESSIONS (SID, u32 length,
 * data), told apart by ARGV[4]: the hash to read, "sidu:" or "sess:". */
static const char router_bus_ch_records_lua[] = ROUTER_BUS_LUA_COMMON
    "local max, h, out, n = tonumber(ARGV[2]), ARGV[4], {}, 0\n"
    "for _, e in ipairs(live(p .. 'chm:' .. ARGV[3], online)) do\n"
    "  local v = redis.call('HGET', p .. h .. e[2], e[1]) or ''\n"
    "  local r = h == 'sidu:' and e[1] .. string.char(#v) .. v or e[1] .. u32(#v) .. v\n"
    "  n = n + #r\n"
    "  if n > max then return 0 end\n"
    "  out[#out + 1] = r\n"
    "end\n"
    "return table.concat(out)\n";

/* CHANNELS: the channels of every live worker (chans:, the registry as for
 * INFO), each with its live members counted once. */
static const char router_bus_channels_lua[] = ROUTER_BUS_LUA_COMMON
    "local max, seen, out, n = tonumber(ARGV[2]), {}, {}, 0\n"
    "for _, id in ipairs(redis.call('SMEMBERS', p .. 'workers')) do\n"
    "  if alive(id) then\n"
    "    for _, ch in ipairs(redis.call('SMEMBERS', p .. 'chans:' .. id)) do\n"
    "      if not seen[ch] then\n"
    "        seen[ch] = true\n"
    "        local m = #live(p .. 'chm:' .. ch, online)\n"
    "        if m > 0 then\n"
    "          n = n + 5 + #ch\n"
    "          if n > max then return 0 end\n"
    "          out[#out + 1] = string.char(#ch) .. ch .. u32(m)\n"
    "        end\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return table.concat(out)\n";

/* EVAL script 0 <prefix> arg[0] .. arg[n-1]; cb gets privdata (NULL: no
 * answer wanted). -1 when it was not sent (the bus not connected, too many
 * replies pending, out of memory): cb is not called. */
static int router_bus_eval(struct bus *bus, const char *script, size_t slen, redisCallbackFn *cb,
                           void *privdata, int n, const char **arg, const size_t *arglen)
{
    const char **argv = malloc((size_t)(4 + n) * sizeof(*argv));
    size_t *argvlen = malloc((size_t)(4 + n) * sizeof(*argvlen));
    const char *prefix = bus_prefix(bus);
    int rc = -1;

    if (argv != NULL && argvlen != NULL) {
        argv[0] = "EVAL";
        argvlen[0] = 4;
        argv[1] = script;
        argvlen[1] = slen;
        argv[2] = "0";
        argvlen[2] = 1;
        argv[3] = prefix;
        argvlen[3] = strlen(prefix);
        for (int i = 0; i < n; i++) {
            argv[4 + i] = arg[i];
            argvlen[4 + i] = arglen[i];
        }
        rc = bus_command_argv(bus, cb, privdata, 4 + n, argv, argvlen);
    }
    free(argv);
    free(argvlen);
    return rc;
}

/* SEND_UID, KICK_UID: the script finds the workers of the uids and
 * publishes; nothing comes back. */
static void router_bus_uids(struct rconn *c, const struct rmsg *m, struct evbuffer *payload)
{
    size_t off = 0, len, max = 2 + m->slen / 2; /* two bytes a uid at least */
    const char **arg = malloc(max * sizeof(*arg));
    size_t *arglen = malloc(max * sizeof(*arglen));
    const unsigned char *uid;
    char type[8];
    int n = 0;

    if (arg == NULL || arglen == NULL)
        goto oom;
    arg[n] = type;
    arglen[n++] = (size_t)snprintf(type, sizeof(type), "%u", m->type);
    arglen[n] = payload ? evbuffer_get_length(payload) : 0;
    arg[n] = arglen[n] > 0 ? (const char *)evbuffer_pullup(payload, -1) : "";
    if (arg[n++] == NULL)
        goto oom;
    while ((size_t)n < max && rmsg_uids_next(m->s, m->slen, &off, &uid, &len) == 1) {
        arg[n] = (const char *)uid;
        arglen[n++] = len;
    }
    if (router_bus_eval(router_conn_bus(c), router_bus_uids_lua, sizeof(router_bus_uids_lua) - 1,
                        NULL, NULL, n, arg, arglen)
        < 0)
        log_err("router: %s: %s dropped: the bus is not connected", router_conn_peer(c),
                rmsg_type_name(m->type));
    else
        log_debug("router: %s: %s of %d uids published", router_conn_peer(c),
                  rmsg_type_name(m->type), n - 2);
    free(arg);
    free(arglen);
    return;
oom:
    log_err("router: %s: out of memory for a %s of %u + %u bytes, not sent", router_conn_peer(c),
            rmsg_type_name(m->type), m->slen, m->len);
    free(arg);
    free(arglen);
}

/* What a query's reply comes back to: its connection, its place among that
 * connection's answers, and its type. */
struct router_bus_query {
    struct rconn *c;
    struct ranswer *a;
    uint16_t type;
};

static void router_bus_query_reply(redisAsyncContext *ac, void *rep, void *privdata)
{
    struct router_bus_query *q = privdata;
    struct rconn *c = q->c;
    struct ranswer *a = q->a;
    uint16_t type = q->type;
    redisReply *reply = rep;

    (void)ac;
    free(q);
    if (!router_conn_release(c))
        return;
    if (reply && reply->type == REDIS_REPLY_STRING && reply->len <= router_conn_answer_max(c)) {
        router_answer_fill(c, a, type, reply->str, reply->len);
    } else if (reply && (reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_INTEGER)) {
        log_info("router: %s: %s answer over ROUTER_ANSWER_MAX (%zu bytes), answered ERROR",
                 router_conn_peer(c), rmsg_type_name(type), router_conn_answer_max(c));
        router_answer_refuse(c, a, type, "answer over ROUTER_ANSWER_MAX");
    } else {
        log_err("router: %s: %s from the bus failed: %s", router_conn_peer(c), rmsg_type_name(type),
                reply && reply->type == REDIS_REPLY_ERROR ? reply->str : "no reply");
        router_answer_refuse(c, a, type, "the bus failed");
    }
}

static void router_bus_query(struct rconn *c, const struct rmsg *m, struct evbuffer *payload)
{
    const char *script;
    size_t slen;
    char max[24];
    const char *arg[3] = {max, (const char *)m->s, NULL};
    size_t arglen[3] = {0, m->slen, 0};
    int n = 2;
    struct router_bus_query *q;

#define ROUTER_BUS_SCRIPT(s) (script = (s), slen = sizeof(s) - 1)
    switch (m->type) {
    case RMSG_IS_ONLINE:
        ROUTER_BUS_SCRIPT(router_bus_is_online_lua);
        break;
    case RMSG_UID_COUNT:
        ROUTER_BUS_SCRIPT(router_bus_uid_count_lua);
        break;
    case RMSG_UID_SIDS:
        ROUTER_BUS_SCRIPT(router_bus_uid_sids_lua);
        break;
    case RMSG_SID_UID:
        ROUTER_BUS_SCRIPT(router_bus_sid_uid_lua);
        break;
    case RMSG_SESSION_GET:
        ROUTER_BUS_SCRIPT(router_bus_session_get_lua);
        break;
    case RMSG_CH_COUNT:
        ROUTER_BUS_SCRIPT(router_bus_ch_count_lua);
        break;
    case RMSG_CH_MEMBERS:
    case RMSG_CH_SESSIONS:
        ROUTER_BUS_SCRIPT(router_bus_ch_records_lua);
        arg[n] = m->type == RMSG_CH_MEMBERS ? "sidu:" : "sess:";
        arglen[n++] = 5;
        break;
    case RMSG_CHANNELS:
        ROUTER_BUS_SCRIPT(router_bus_channels_lua);
        break;
    default:
        return; /* not in the table */
    }
#undef ROUTER_BUS_SCRIPT
    arglen[0] = (size_t)snprintf(max, sizeof(max), "%zu", router_conn_answer_max(c));
    if ((q = malloc(sizeof(*q))) == NULL) {
        log_err("router: %s: out of memory asking the bus for %s, closing", router_conn_peer(c),
                rmsg_type_name(m->type));
        router_conn_kill(c);
        return;
    }
    q->c = c;
    q->type = m->type;
    if ((q->a = router_answer_reserve(c)) == NULL) {
        free(q);
        return;
    }
    if (router_bus_eval(router_conn_bus(c), script, slen, router_bus_query_reply, q, n, arg, arglen)
        < 0) {
        log_err("router: %s: %s: the bus is not connected, answered ERROR", router_conn_peer(c),
                rmsg_type_name(m->type));
        router_answer_refuse(c, q->a, m->type, "the bus is not connected");
        free(q);
        return;
    }
    router_conn_hold(c);
}

/* Types only a gateway link or the router itself sends: nothing to do on
 * the bus. */
static void router_bus_unexpected(struct rconn *c, const struct rmsg *m, struct evbuffer *payload)
{
    log_err("router: %s: %s is not for the router to receive, ignored", router_conn_peer(c),
            rmsg_type_name(m->type));
}

const struct router_cmd router_bus_cmds[RMSG_TYPE_MAX + 1] = {
    [RMSG_AUTH] = {router_bus_gateway_msg, ROUTER_D_SKIP},
    [RMSG_CONN] = {router_bus_gateway_msg, ROUTER_D_SKIP},
    [RMSG_CLOSE] = {router_bus_gateway_msg, ROUTER_D_SKIP},
    [RMSG_KICK] = {router_bus_split, ROUTER_D_SKIP},
    [RMSG_SEND_MSG] = {router_bus_split, ROUTER_D_PAYLOAD},
    [RMSG_SEND_ALL] = {router_bus_send_all, ROUTER_D_PAYLOAD},
    [RMSG_CH_ADD] = {router_bus_split, ROUTER_D_BYTES},
    [RMSG_CH_DEL] = {router_bus_split, ROUTER_D_BYTES},
    [RMSG_CH_PUB] = {router_bus_ch_pub, ROUTER_D_PAYLOAD},
    [RMSG_CH_SUB] = {router_bus_gateway_msg, ROUTER_D_SKIP},
    [RMSG_CH_UNSUB] = {router_bus_gateway_msg, ROUTER_D_SKIP},
    [RMSG_INFO] = {router_bus_info, ROUTER_D_SKIP},
    [RMSG_SECRET] = {router_cmd_secret, ROUTER_D_BYTES},
    [RMSG_PING] = {router_cmd_ping, ROUTER_D_SKIP},
    [RMSG_PONG] = {router_cmd_pong, ROUTER_D_SKIP}, /* no links here: ignored */
    [RMSG_BIND] = {router_bus_split, ROUTER_D_BYTES},
    [RMSG_UNBIND] = {router_bus_split, ROUTER_D_SKIP},
    [RMSG_SEND_UID] = {router_bus_uids, ROUTER_D_PAYLOAD},
    [RMSG_KICK_UID] = {router_bus_uids, ROUTER_D_SKIP},
    [RMSG_SESSION_SET] = {router_bus_split, ROUTER_D_PAYLOAD},
    [RMSG_SEND_ALL_EX] = {router_bus_send_all, ROUTER_D_PAYLOAD},
    [RMSG_CH_PUB_EX] = {router_bus_ch_pub, ROUTER_D_PAYLOAD},
    [RMSG_IS_ONLINE] = {router_bus_query, ROUTER_D_SKIP},
    [RMSG_UID_COUNT] = {router_bus_query, ROUTER_D_SKIP},
    [RMSG_UID_SIDS] = {router_bus_query, ROUTER_D_SKIP},
    [RMSG_SID_UID] = {router_bus_query, ROUTER_D_SKIP},
    [RMSG_SESSION_GET] = {router_bus_query, ROUTER_D_SKIP},
    [RMSG_CH_COUNT] = {router_bus_query, ROUTER_D_SKIP},
    [RMSG_CH_MEMBERS] = {router_bus_query, ROUTER_D_SKIP},
    [RMSG_CH_SESSIONS] = {router_bus_query, ROUTER_D_SKIP},
    [RMSG_CHANNELS] = {router_bus_query, ROUTER_D_SKIP},
    [RMSG_ERROR] = {router_bus_unexpected, ROUTER_D_SKIP},
    [RMSG_GW_QUERY] = {router_bus_unexpected, ROUTER_D_SKIP},
    [RMSG_GW_ANSWER] = {router_bus_unexpected, ROUTER_D_SKIP},
    [RMSG_HELLO] = {router_bus_unexpected, ROUTER_D_SKIP},
};
