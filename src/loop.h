/* loop.h - the event loop every process runs. */
#ifndef FOOKING_LOOP_H
#define FOOKING_LOOP_H

#include <event2/event.h>

/* An event_base for a gateway worker or the router. NULL on failure. */
/* Once, before anything of libevent is made: its buffers' blocks come from a
 * small cache (see loop.c). */
void loop_mem_init(void);
/* Gives back the cached blocks that were not needed since the last call (a
 * once-a-second sweep, or before a trim). */
void loop_mem_trim(void);
size_t loop_mem_cached(void); /* blocks held now */
struct event_base *loop_new(void);

/* Every LOOP_TRIM_SECONDS, hands memory freed after a burst (a drained
 * broadcast, thousands of closed connections) back to the kernel: glibc keeps
 * it otherwise, and RSS would stay at its high-water mark. The caller frees
 * the returned event before the base. */
#define LOOP_TRIM_SECONDS 10
struct event *loop_trim_new(struct event_base *base);

#endif
