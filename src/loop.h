/* loop.h - the event loop every process runs. */
#ifndef FOOKING_LOOP_H
#define FOOKING_LOOP_H

#include <event2/event.h>

/* An event_base for a gateway worker or the router. NULL on failure. */
struct event_base *loop_new(void);

#endif
