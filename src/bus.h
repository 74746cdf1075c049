/* bus.h - a Redis connection pair for the message bus (BUS = "redis://..."):
 * one connection for SUBSCRIBE, one for commands (PUBLISH, presence), both on
 * the caller's libevent loop through hiredis' async API, each reconnecting with
 * back-off (0.1 s doubling to 5 s). While Redis is away nothing queues up:
 * publishes and commands are dropped (counted, logged), so a gateway never
 * blocks or grows because of the bus. */
#ifndef FOOKING_BUS_H
#define FOOKING_BUS_H

#include <stddef.h>

#include <event2/event.h>
#include <hiredis/async.h>

#include "counter.h"

struct bus;

struct bus_handlers {
    void *arg;
    /* The subscribe connection is (re)connected: subscribe to everything now. */
    void (*sub_ready)(void *arg);
    /* The command connection is (re)connected: refresh presence now. */
    void (*cmd_ready)(void *arg);
    /* A message on a subscribed channel. */
    void (*message)(void *arg, const char *channel, size_t clen, const char *data, size_t len);
};

/* Parses "redis://[:password@]host:port[/db]". 0, or -1 with a message in err. */
int bus_parse_url(const char *url, char *host, size_t hostlen, int *port, char *password,
                  size_t pwlen, int *db, char *err, size_t errlen);

/* Connects (asynchronously). NULL when the URL is bad (logged). With
 * link_timeout > 0 (LINK_TIMEOUT seconds) each connection is pinged every
 * link_timeout / 3 and dropped and reconnected when a ping has had no answer
 * for link_timeout. */
struct bus *bus_new(struct event_base *base, const char *url, const char *prefix, int link_timeout,
                    const struct bus_handlers *h);
void bus_free(struct bus *b);
/* Where the bus counts from now on (connections up, reconnects, publishes and
 * commands dropped): the owner's metrics. Until then, the bus's own. */
void bus_set_counters(struct bus *b, struct bus_counters *c);
const char *bus_prefix(const struct bus *b);
int bus_sub_ready(const struct bus *b);
int bus_cmd_ready(const struct bus *b);

/* <prefix><name> channels, binary-safe. No-ops while disconnected (the
 * sub_ready handler subscribes everything again after a reconnect). */
void bus_subscribe(struct bus *b, const char *name, size_t len);
void bus_unsubscribe(struct bus *b, const char *name, size_t len);
/* PUBLISH <prefix><name> (header + body, sent as one value). 0, or -1 when it
 * was dropped (disconnected, too many replies pending, out of memory). */
int bus_publish(struct bus *b, const char *name, size_t nlen, const void *hdr, size_t hlen,
                const void *body, size_t blen);
/* Any command on the command connection; cb may be NULL. Returns -1 when it
 * was dropped (disconnected, or too many replies pending): cb is not called. */
int bus_command_argv(struct bus *b, redisCallbackFn *cb, void *privdata, int argc,
                     const char **argv, const size_t *argvlen);

/* Lua for the bus's scripts (EVAL), which find the worker of a SID the way
 * sid.h lays it out: wid(sid) is "<server>:<worker>", or nil when sid is not
 * 16 lowercase hex digits. */
#define BUS_LUA_WID                                                                                \
    "local function wid(s)\n"                                                                      \
    "  if #s ~= 16 or not string.find(s, '^[0-9a-f]+$') then return nil end\n"                     \
    "  local low = tonumber(string.sub(s, 11, 16), 16)\n"                                          \
    "  return (math.floor(low / 2048) % 8192) .. ':' .. (math.floor(low / 64) % 32)\n"             \
    "end\n"

#endif
