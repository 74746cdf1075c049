/* uplink.h - a gateway worker's link to the router: announces the worker's
 * sessions and channels, hands the router's commands to the worker's executor,
 * and reconnects with back-off (0.1 s doubling to 5 s), resyncing everything
 * after each reconnect so the router converges to the truth. */
#ifndef FOOKING_UPLINK_H
#define FOOKING_UPLINK_H

struct worker;

/* A link (link.h) to ROUTER_HOST:ROUTER_PORT, connecting now; NULL when the
 * host does not resolve (logged) or out of memory. */
struct link *uplink_new(struct worker *w);

#endif
