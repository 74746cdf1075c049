/* counter.h - counters and gauges that one process writes and another reads
 * (a worker's in shared memory, read by the master's /metrics; the router's,
 * read by its own /metrics).
 *
 * Each has exactly one writer, so an increment is a relaxed load and store:
 * no locked instruction on the hot path, and being atomic a reader never sees
 * a torn value. Counters only grow; gauges go both ways. */
#ifndef FOOKING_COUNTER_H
#define FOOKING_COUNTER_H

#include <stdatomic.h>
#include <stdint.h>

typedef _Atomic uint64_t counter_t;
typedef _Atomic int64_t gauge_t;

static inline void counter_add(counter_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static inline uint64_t counter_get(const counter_t *c)
{
    return atomic_load_explicit((counter_t *)c, memory_order_relaxed);
}

static inline void gauge_add(gauge_t *g, int64_t n)
{
    atomic_store_explicit(g, atomic_load_explicit(g, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static inline void gauge_set(gauge_t *g, int64_t v)
{
    atomic_store_explicit(g, v, memory_order_relaxed);
}

static inline int64_t gauge_get(const gauge_t *g)
{
    return atomic_load_explicit((gauge_t *)g, memory_order_relaxed);
}

/* What a bus (bus.c) counts, wherever its owner keeps it. */
struct bus_counters {
    gauge_t connected[2]; /* the subscribe and the command connection: 1 while up */
    counter_t reconnects; /* connections up again after being lost */
    counter_t dropped;    /* publishes and commands dropped (down, too many pending) */
};

#endif
