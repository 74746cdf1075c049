/* buslink.h - a gateway worker on the Redis bus (BUS): it subscribes to
 * <prefix>all, <prefix>gw:<server>:<worker> and <prefix>ch:<name> for each
 * channel with a local member, runs the router-protocol messages published
 * there, and keeps its presence in Redis:
 *   <prefix>hb:<server>:<worker>     "<clients> <channels>", TTL 10 s, every 3 s
 *   <prefix>sids:<server>:<worker>   set of its live SIDs
 *   <prefix>chans:<server>:<worker>  set of its channels with members
 *   <prefix>workers                  set of "<server>:<worker>" of live workers
 *                                    (SADD on every connect, SREM on a clean
 *                                    stop; INFO drops members without a heartbeat) */
#ifndef FOOKING_BUSLINK_H
#define FOOKING_BUSLINK_H

#include <stddef.h>

struct worker;
struct client;

struct buslink *buslink_new(struct worker *w);
/* The worker is stopping cleanly: withdraw its presence now. */
void buslink_stop(struct buslink *bl);
void buslink_free(struct buslink *bl);
/* No-ops when bl is NULL or Redis is away (the refresh after reconnect covers it). */
void buslink_conn(struct buslink *bl, struct client *c);
void buslink_close(struct buslink *bl, struct client *c);
void buslink_ch_sub(struct buslink *bl, const char *name, size_t len);
void buslink_ch_unsub(struct buslink *bl, const char *name, size_t len);

#endif
