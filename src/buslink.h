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

struct worker;

/* A link (link.h) to the BUS Redis, connecting now; NULL when the URL is bad
 * (logged) or out of memory. While Redis is away its calls are no-ops: the
 * refresh after reconnect covers what was missed. */
struct link *buslink_new(struct worker *w);

#endif
