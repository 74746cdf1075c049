/* master_metrics.h - the gateway master's HTTP endpoint (METRICS_PORT):
 * GET /metrics, the Prometheus text of every worker's counters summed from
 * shared memory, and GET /healthz, 200 while every worker is alive. The
 * master only supervises, so it answers even while a worker is busy. */
#ifndef FOOKING_MASTER_METRICS_H
#define FOOKING_MASTER_METRICS_H

#include <event2/buffer.h>
#include <event2/event.h>

#include "config.h"
#include "shm.h"

struct master_metrics;

/* Listens on METRICS_HOST:METRICS_PORT on base. NULL when it cannot (logged,
 * naming the address). */
struct master_metrics *master_metrics_new(struct event_base *base, const struct config *cfg,
                                          struct shm_block *shm);
void master_metrics_free(struct master_metrics *m);
/* The listening socket, for a forked worker to close: it is the master's. */
int master_metrics_fd(const struct master_metrics *m);
/* The /metrics text of the gateway (shm's workers, summed) into out. */
void master_metrics_write(const struct shm_block *shm, const struct config *cfg,
                          struct evbuffer *out);
/* Workers alive: started, accepting clients, and not reaped since. */
int master_metrics_alive(const struct shm_block *shm);

#endif
