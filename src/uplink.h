/* uplink.h - a gateway worker's link to the router: announces the worker's
 * sessions and channels, hands the router's commands to the worker's executor,
 * and reconnects with back-off (0.1 s doubling to 5 s), resyncing everything
 * after each reconnect so the router converges to the truth. */
#ifndef FOOKING_UPLINK_H
#define FOOKING_UPLINK_H

#include <stddef.h>

struct worker;
struct client;

struct uplink *uplink_new(struct worker *w);
void uplink_free(struct uplink *u);
/* Each is a no-op when u is NULL (no router configured) or the link is down:
 * the resync after reconnect covers what was missed. */
void uplink_conn(struct uplink *u, struct client *c);
void uplink_close(struct uplink *u, struct client *c);
void uplink_ch_sub(struct uplink *u, const char *name, size_t len);
void uplink_ch_unsub(struct uplink *u, const char *name, size_t len);

#endif
