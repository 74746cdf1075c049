/* router_metrics.h - what the router counts, and its /metrics text (the
 * Prometheus format, metrics.h): the tables' sizes (links, sessions, uids,
 * channels), messages by type, deliveries to links, links dropped by
 * reason, and the bus's connections in bus mode. router.c increments the
 * counters; router_metrics.c reads them and writes the text. */
#ifndef FOOKING_ROUTER_METRICS_H
#define FOOKING_ROUTER_METRICS_H

#include <event2/buffer.h>

#include "counter.h"
#include "rmsg.h"

struct router;
struct rtable;
struct bus;

/* Why a gateway link was dropped (fooking_router_links_dropped_total{reason}). */
enum router_drop {
    ROUTER_DROP_ERROR,        /* a malformed message, out of memory, a socket error */
    ROUTER_DROP_CLOSED,       /* the gateway closed it (or reset it) */
    ROUTER_DROP_TIMEOUT,      /* silent for LINK_TIMEOUT after answering PING */
    ROUTER_DROP_OUTPUT_LIMIT, /* ROUTER_OUTPUT_LIMIT bytes unsent */
    ROUTER_DROP_REPLACED,     /* the same gateway worker connected again */
    ROUTER_DROP_N
};

struct router_counters {
    counter_t messages[RMSG_TYPE_MAX + 1]; /* received, by type */
    counter_t deliveries;                  /* commands queued on a gateway link */
    counter_t links_dropped[ROUTER_DROP_N];
    struct bus_counters bus; /* bus mode */
};

/* router.c: what the metrics read. */
struct router_counters *router_counters(struct router *r);
struct rtable *router_tables(struct router *r);
struct bus *router_bus(struct router *r);  /* NULL unless BUS is a Redis */
int router_on_bus(const struct router *r); /* BUS is set (Redis or NATS) */

/* The router's /metrics text into out. */
void router_metrics_write(struct router *r, struct evbuffer *out);

#endif
