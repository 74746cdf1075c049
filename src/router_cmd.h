/* router_cmd.h - inside the router: what a command handler is, and what it may
 * do with the connection its command came on. router.c owns the connections
 * (struct rconn stays private to it) and has one command table per mode: its
 * own, where the router keeps the tables (rtable.c), and router_bus.c's, where
 * it is stateless and publishes each command on the bus (BUS set). */
#ifndef FOOKING_ROUTER_CMD_H
#define FOOKING_ROUTER_CMD_H

#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>

#include "rmsg.h"

struct bus;
struct rconn;
struct ranswer;

/* How a command uses D: dropped unread, read in place (small: AUTH, SECRET, a
 * channel name; m->d points at it), or moved out of the input whole to be
 * forwarded by reference (payload; m->d unset). */
enum router_d { ROUTER_D_SKIP, ROUTER_D_BYTES, ROUTER_D_PAYLOAD };

typedef void router_cmd_fn(struct rconn *c, const struct rmsg *m, struct evbuffer *payload);

struct router_cmd {
    router_cmd_fn *fn;
    enum router_d d;
};

/* The bus mode's table (router_bus.c). */
extern const struct router_cmd router_bus_cmds[RMSG_TYPE_MAX + 1];

/* What both buses' tables share (router_bus.c). A whole message (header, S,
 * then D: payload by reference, or d[0..dlen)), NULL when out of memory. */
struct evbuffer *router_bus_message(uint16_t type, const void *sp, size_t slen,
                                    struct evbuffer *payload, const void *d, size_t dlen);
/* Calls fn once for each gateway worker named by the SIDs in s[0..slen)
 * (read out of each SID), with its SIDs in their order; SIDs no gateway
 * could hold are left out. */
typedef void router_group_fn(void *arg, unsigned server, unsigned worker, const unsigned char *sids,
                             size_t slen);
void router_sids_by_worker(const unsigned char *s, size_t slen, router_group_fn *fn, void *arg);

/* ---- what router.c offers the tables ---- */

/* "addr:port", for log lines. */
const char *router_conn_peer(const struct rconn *c);
/* The router's bus: NULL unless BUS is set. */
struct bus *router_conn_bus(const struct rconn *c);
/* The bus (Redis or NATS) can take commands now: 1, 0 while it is away, -1
 * without a bus. */
int router_conn_bus_ready(const struct rconn *c);
/* Ends the connection (its memory is freed after the current callback). */
void router_conn_kill(struct rconn *c);
/* Queues a message with empty S and D = d[0..len) on c, dropping c when that
 * passes ROUTER_OUTPUT_LIMIT. 0, or -1 when c was dropped. */
int router_conn_send(struct rconn *c, uint16_t type, const void *d, size_t len);
/* Keeps c's memory alive for a callback that will come later (a bus reply),
 * even if c is killed meanwhile. Each hold is released exactly once, by
 * router_conn_release, which returns 1 if c is still alive (0: it was killed;
 * do not touch it, it is freed once no hold is left). */
void router_conn_hold(struct rconn *c);
int router_conn_release(struct rconn *c);

/* Answers to queries leave in the order the queries came (router.c keeps a
 * FIFO per connection). router_conn_answer queues one now (S empty, D =
 * d[0..len)); 0, or -1 when c was dropped. An answer that comes later (a bus
 * reply) reserves its place first: router_answer_reserve (NULL: out of
 * memory, c dropped), then router_answer_fill exactly once, unless c was
 * killed meanwhile (hold c across the wait: see router_conn_hold). */
int router_conn_answer(struct rconn *c, uint16_t type, const void *d, size_t len);
struct ranswer *router_answer_reserve(struct rconn *c);
void router_answer_fill(struct rconn *c, struct ranswer *a, uint16_t type, const void *d,
                        size_t len);
/* ROUTER_ANSWER_MAX as it applies to c (bytes of an answer's D), and a
 * reserved answer filled with ERROR (its type, why) instead. */
size_t router_conn_answer_max(const struct rconn *c);
void router_answer_refuse(struct rconn *c, struct ranswer *a, uint16_t type, const char *why);
/* A message refused (bad shape, not supported here): a query is answered
 * ERROR (its type, why); a command is only logged, with the peer. */
void router_conn_refuse(struct rconn *c, const struct rmsg *m, const char *why);

/* ---- local connections: no socket (the HTTP API, router_http.c) ----
 *
 * A local connection runs messages exactly as a backend's connection would
 * (the same command table, the same checks, answers in order), and is
 * trusted (the HTTP API checks ROUTER_SECRET itself). Each answer, a whole
 * message (header, S empty, D), goes to fn as it is ready: synchronously
 * from router_local_run, or later from the loop (gateways, the bus); fn may
 * take msg's bytes and may call router_local_close. If the router drops the
 * connection (out of memory, the bus gone), fn(arg, NULL) is called once. */
struct router;
struct config;
typedef void router_answer_fn(void *arg, struct evbuffer *msg);
/* NULL when out of memory. peer names it in log lines. */
struct rconn *router_local_new(struct router *r, const char *peer, router_answer_fn *fn, void *arg);
/* Runs m (S and D in the caller's memory, used during the call only): RMSG_OK
 * when it ran, else the status of the check that refused it (nothing ran, no
 * answer will come). A query's answer comes through fn. */
int router_local_run(struct rconn *c, struct rmsg *m);
/* The owner is done: fn is not called again; the memory goes once nothing
 * (a gateway query, a bus reply) refers to it any more. */
void router_local_close(struct rconn *c);
const struct config *router_config(const struct router *r);
/* ROUTER_SECRET is set; p[0..n) is it (SHA-256 digests compared in constant
 * time, so neither its bytes nor its length leak through timing). */
int router_has_secret(const struct router *r);
int router_secret_ok(const struct router *r, const void *p, size_t n);
struct event_base *router_base(const struct router *r);

/* Commands both modes answer the same way. */
router_cmd_fn router_cmd_secret, router_cmd_ping, router_cmd_pong;

#endif
