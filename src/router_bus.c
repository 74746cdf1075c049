/* router_bus.c - the router in bus mode (BUS = "redis://...", DESIGN §9):
 * stateless. It keeps no sessions and no links; each backend command is
 * published on Redis, where the gateway workers subscribe: KICK, SEND_MSG,
 * CH_ADD and CH_DEL on gw:<server>:<worker> of each SID's worker (found in the
 * SID itself, no lookup), SEND_ALL on "all", CH_PUB on ch:<name>. INFO is
 * answered from the presence the workers keep in Redis. A gateway that
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

/* Publishes header + S + D on <prefix><channel>. */
static void router_bus_publish(struct bus *bus, const char *ch, size_t chlen, uint16_t type,
                               const void *sp, size_t slen, struct evbuffer *payload, const void *d,
                               size_t dlen)
{
    unsigned char hdr[RMSG_HEADER_LEN];
    struct evbuffer *msg = evbuffer_new();
    if (msg == NULL)
        return;
    if (payload != NULL)
        dlen = evbuffer_get_length(payload);
    rmsg_encode_header(hdr, type, (uint16_t)slen, (uint32_t)dlen);
    evbuffer_add(msg, hdr, sizeof(hdr));
    evbuffer_add(msg, sp, slen);
    if (payload != NULL)
        evbuffer_add_buffer_reference(msg, payload);
    else
        evbuffer_add(msg, d, dlen);
    size_t n = evbuffer_get_length(msg);
    bus_publish(bus, ch, chlen, evbuffer_pullup(msg, -1), n, NULL, 0);
    evbuffer_free(msg);
}

static void router_bus_group_free(void *g)
{
    evbuffer_free(g);
}

/* KICK, SEND_MSG, CH_ADD, CH_DEL: one publish per gateway worker, found from
 * the server and worker ids inside each SID (no lookup, no state). */
static void router_bus_split(struct rconn *c, const struct rmsg *m, struct evbuffer *payload)
{
    struct hmap *groups = hmap_new(8);
    if (groups == NULL)
        return;
    for (size_t off = 0; off + RMSG_SID_LEN <= m->slen; off += RMSG_SID_LEN) {
        unsigned server, worker;
        char sid[SID_LEN];
        memcpy(sid, m->s + off, SID_LEN);
        if (sid_decode(sid, NULL, &server, &worker, NULL) < 0)
            continue; /* not one of ours: no gateway can hold it */
        unsigned char key[4] = {(unsigned char)(server >> 8), (unsigned char)server,
                                (unsigned char)worker, 0};
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
        struct evbuffer *g = v;
        char ch[32];
        int chlen = snprintf(ch, sizeof(ch), "gw:%u:%u", (unsigned)key[0] << 8 | key[1], key[2]);
        size_t slen = evbuffer_get_length(g);
        router_bus_publish(router_conn_bus(c), ch, (size_t)chlen, m->type, evbuffer_pullup(g, -1),
                           slen, payload, m->d, m->len);
    }
    hmap_free(groups, router_bus_group_free);
    log_debug("router: %s: %s published", router_conn_peer(c), rmsg_type_name(m->type));
}

static void router_bus_send_all(struct rconn *c, const struct rmsg *m, struct evbuffer *payload)
{
    router_bus_publish(router_conn_bus(c), "all", 3, RMSG_SEND_ALL, NULL, 0, payload, NULL, 0);
}

static void router_bus_ch_pub(struct rconn *c, const struct rmsg *m, struct evbuffer *payload)
{
    char ch[RMSG_MAX_CHANNEL + 4];
    memcpy(ch, "ch:", 3);
    memcpy(ch + 3, m->s, m->slen);
    router_bus_publish(router_conn_bus(c), ch, m->slen + 3u, RMSG_CH_PUB, m->s, m->slen, payload,
                       NULL, 0);
}

static void router_bus_gateway_msg(struct rconn *c, const struct rmsg *m, struct evbuffer *payload)
{
    log_err("router: %s: %s from a gateway, but this router runs on the bus (BUS): gateways "
            "must set BUS too; closing",
            router_conn_peer(c), rmsg_type_name(m->type));
    router_conn_kill(c);
}

/* INFO from the presence the gateway workers keep in Redis, in one round
 * trip: the heartbeat of every live worker, and the union of their channels.
 * Workers are found in the registry set <prefix>workers, never with KEYS: the
 * bus may share a Redis with millions of other keys, and KEYS would block it
 * for all of them. A member whose heartbeat expired (a worker that died
 * without a clean stop) is skipped and removed here. */
static const char router_bus_info_lua[] =
    "local p = ARGV[1]\n"
    "local rows, seen, nch, total = {}, {}, 0, 0\n"
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
    "    end\n"
    "  end\n"
    "end\n"
    "table.sort(rows, function(a, b) return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2]) end)\n"
    "local out = {'clients: ' .. total .. '\\r\\nchannels: ' .. nch .. '\\r\\n'}\n"
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

/* Backend API v2 is not built for the bus yet: a command is logged and
 * dropped, a query answered ERROR, and the connection goes on. */
static void router_bus_v2(struct rconn *c, const struct rmsg *m, struct evbuffer *payload)
{
    router_conn_refuse(c, m, "not supported in bus mode yet");
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
    [RMSG_BIND] = {router_bus_v2, ROUTER_D_SKIP},
    [RMSG_UNBIND] = {router_bus_v2, ROUTER_D_SKIP},
    [RMSG_SEND_UID] = {router_bus_v2, ROUTER_D_SKIP},
    [RMSG_KICK_UID] = {router_bus_v2, ROUTER_D_SKIP},
    [RMSG_SESSION_SET] = {router_bus_v2, ROUTER_D_SKIP},
    [RMSG_SEND_ALL_EX] = {router_bus_v2, ROUTER_D_SKIP},
    [RMSG_CH_PUB_EX] = {router_bus_v2, ROUTER_D_SKIP},
    [RMSG_IS_ONLINE] = {router_bus_v2, ROUTER_D_SKIP},
    [RMSG_UID_COUNT] = {router_bus_v2, ROUTER_D_SKIP},
    [RMSG_UID_SIDS] = {router_bus_v2, ROUTER_D_SKIP},
    [RMSG_SID_UID] = {router_bus_v2, ROUTER_D_SKIP},
    [RMSG_SESSION_GET] = {router_bus_v2, ROUTER_D_SKIP},
    [RMSG_CH_COUNT] = {router_bus_v2, ROUTER_D_SKIP},
    [RMSG_CH_MEMBERS] = {router_bus_v2, ROUTER_D_SKIP},
    [RMSG_CH_SESSIONS] = {router_bus_v2, ROUTER_D_SKIP},
    [RMSG_CHANNELS] = {router_bus_v2, ROUTER_D_SKIP},
    [RMSG_ERROR] = {router_bus_v2, ROUTER_D_SKIP},
    [RMSG_GW_QUERY] = {router_bus_v2, ROUTER_D_SKIP},
    [RMSG_GW_ANSWER] = {router_bus_v2, ROUTER_D_BYTES},
    [RMSG_HELLO] = {router_bus_v2, ROUTER_D_SKIP},
};
