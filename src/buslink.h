/* buslink.h - a gateway worker on the Redis bus (BUS): it subscribes to
 * <prefix>all, <prefix>gw:<server>:<worker> and <prefix>ch:<name> for each
 * channel with a local member, runs the router-protocol messages published
 * there, and keeps its presence in Redis:
 *   <prefix>hb:<server>:<worker>     "<clients> <channels>", TTL 10 s, every 3 s
 *   <prefix>sids:<server>:<worker>   set of its live SIDs
 *   <prefix>chans:<server>:<worker>  set of its channels with members
 *   <prefix>workers                  set of "<server>:<worker>" of live workers
 *                                    (SADD on every connect, SREM on a clean
 *                                    stop; INFO drops members without a heartbeat)
 * and, for backend API v2 (the bus routers' queries and SEND_UID/KICK_UID):
 *   <prefix>sidu:<server>:<worker>   hash SID -> uid of its bound sessions
 *   <prefix>sess:<server>:<worker>   hash SID -> session data
 *   <prefix>u:<uid>                  set of the SIDs bound to uid (all workers)
 *   <prefix>chm:<channel>            set of the channel's member SIDs (all workers)
 * A SID in the shared sets counts only while its worker (read out of the SID)
 * has a heartbeat and lists it in sids:; readers skip and remove the others. */
#ifndef FOOKING_BUSLINK_H
#define FOOKING_BUSLINK_H

struct worker;

/* A link (link.h) to the BUS Redis, connecting now; NULL when the URL is bad
 * (logged) or out of memory. While Redis is away its calls are no-ops: the
 * refresh after reconnect covers what was missed. */
struct link *buslink_new(struct worker *w);

#endif
