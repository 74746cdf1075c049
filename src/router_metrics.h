/* router_metrics.h - the router's Prometheus metrics (GET /metrics). */
#ifndef FOOKING_ROUTER_METRICS_H
#define FOOKING_ROUTER_METRICS_H

#include <event2/buffer.h>

struct router;

/* Appends the metrics, in Prometheus text format 0.0.4, to out. */
void router_metrics_write(struct router *r, struct evbuffer *out);

#endif
