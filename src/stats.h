/* stats.h - what a gateway worker counts for the master's /metrics: one
 * struct worker_stats per worker slot, in shared memory (shm.h). Only the
 * slot's worker writes it (counter.h); the master reads every slot and sums
 * them, and clears the gauges of a worker that died (its successor counts
 * on from the counters it left, so they never go back). */
#ifndef FOOKING_STATS_H
#define FOOKING_STATS_H

#include "counter.h"

/* Client protocols, as fooking_clients{protocol} tells them apart. */
enum stats_proto { STATS_PROTO_LENGTH, STATS_PROTO_WEBSOCKET, STATS_PROTO_SCRIPT, STATS_PROTO_N };

/* Why clients were closed (fooking_client_closed_total{reason}): the many
 * close reasons of the logs, in a small fixed set (client.c maps them). */
enum stats_close {
    STATS_CLOSE_CLIENT,            /* the peer closed, or sent a close frame */
    STATS_CLOSE_IDLE,              /* IDLE_TIME, or WebSocket pings unanswered */
    STATS_CLOSE_HANDSHAKE_TIMEOUT, /* HANDSHAKE_TIMEOUT, TLS or WebSocket */
    STATS_CLOSE_SLOW_CONSUMER,     /* output over MAX_OUTPUT_SIZE, or never drained */
    STATS_CLOSE_KICKED,            /* KICK from the router or a backend */
    STATS_CLOSE_BACKEND,           /* the backend's reply closed it */
    STATS_CLOSE_SCRIPT,            /* the protocol script closed it */
    STATS_CLOSE_PROTOCOL,          /* over MAX_BUFF_SIZE, a bad WebSocket frame or handshake */
    STATS_CLOSE_STATIC,            /* a plain HTTP request answered (STATIC_DIR) */
    STATS_CLOSE_STOPPING,          /* the gateway stops */
    STATS_CLOSE_ERROR,             /* socket or TLS error, out of memory, script error */
    STATS_CLOSE_N
};

/* How a backend request ended (fooking_backend_requests_total{outcome}). */
enum backend_outcome {
    BACKEND_OK,            /* a 2xx reply */
    BACKEND_STATUS,        /* a reply with another status (body not delivered) */
    BACKEND_FAILED,        /* connection lost, malformed reply, reply too big */
    BACKEND_TIMEOUT,       /* BACKEND_READ_TIMEOUT (or a write timeout) */
    BACKEND_REFUSED,       /* END_REQUEST with a protocol status (overloaded, ...) */
    BACKEND_QUEUE_FULL,    /* BACKEND_QUEUE_SIZE waiting already */
    BACKEND_QUEUE_TIMEOUT, /* BACKEND_QUEUE_TIMEOUT in the queue */
    BACKEND_UNAVAILABLE,   /* no server could take it (all down or refusing) */
    BACKEND_OUTCOME_N
};

/* Bounds of fooking_backend_request_duration_seconds, in seconds. */
#define STATS_DURATION_BUCKETS 14
static const double stats_duration_bounds[STATS_DURATION_BUCKETS] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};

struct backend_stats {
    counter_t outcome[BACKEND_OUTCOME_N];
    counter_t duration[STATS_DURATION_BUCKETS + 1]; /* per bucket; the last: over 30 s */
    counter_t duration_ns;                          /* sum of every request's time */
    gauge_t queued;                                 /* requests in the wait queue */
};

struct worker_stats {
    gauge_t clients[STATS_PROTO_N];
    counter_t accepted;
    counter_t refused_max_clients, refused_max_per_ip;
    counter_t closed[STATS_CLOSE_N];
    counter_t messages_in, messages_out; /* client messages, each way */
    counter_t bytes_in, bytes_out;       /* on client sockets (TLS: before encryption) */
    counter_t slow_consumers;            /* clients cut for output over MAX_OUTPUT_SIZE */
    struct backend_stats backend;
    gauge_t router_link;         /* 1 while the link to ROUTER_HOST is up */
    counter_t router_reconnects; /* link up again after being lost */
    struct bus_counters bus;
};

#endif
