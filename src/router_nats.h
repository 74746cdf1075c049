/* router_nats.h - the router's command table on the NATS bus (router_nats.c),
 * and the state it keeps for it: the bus connection, the workers it has heard
 * of, the queries waiting for their answers. */
#ifndef FOOKING_ROUTER_NATS_H
#define FOOKING_ROUTER_NATS_H

#include "counter.h"
#include "router_cmd.h"

struct router_nats;
struct config;

extern const struct router_cmd router_nats_cmds[RMSG_TYPE_MAX + 1];

/* Connects (asynchronously); counts into ctr. NULL when the URL is bad
 * (logged) or out of memory. */
struct router_nats *router_nats_new(struct router *r, const struct config *cfg,
                                    struct bus_counters *ctr);
/* Answers what waits with ERROR (the connections are still there), then
 * disconnects. */
void router_nats_free(struct router_nats *rn);
int router_nats_ready(const struct router_nats *rn);

/* router.c's: the router's NATS bus state, NULL unless BUS is nats://. */
struct router_nats *router_conn_nats(const struct rconn *c);

#endif
