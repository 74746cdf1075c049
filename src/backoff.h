/* backoff.h - the delay before trying again: min, doubling after each failed
 * try up to max, back to min once a try succeeds. One for every retry loop in
 * fooking: the router link (uplink.c), the Redis connections (bus.c) and the
 * master respawning a worker that keeps dying young (master.c). */
#ifndef FOOKING_BACKOFF_H
#define FOOKING_BACKOFF_H

#include <sys/time.h>

struct backoff {
    double min, max; /* seconds */
    double next;     /* the delay backoff_next returns next */
};

void backoff_init(struct backoff *b, double min, double max);
/* The delay to wait now (seconds); the one after it is twice as long, up to max. */
double backoff_next(struct backoff *b);
/* A try succeeded: the next failure waits min again. */
void backoff_reset(struct backoff *b);
/* seconds as a struct timeval, for evtimer_add. */
struct timeval backoff_timeval(double seconds);

#endif
