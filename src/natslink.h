/* natslink.h - a gateway worker on the NATS bus (BUS = "nats://..."). It
 * subscribes to (under BUS_PREFIX, names escaped as nbus.h says):
 *   <prefix>all                 SEND_ALL, SEND_ALL_EX
 *   <prefix>gw.<server>.<worker> the commands for its SIDs (KICK, SEND_MSG,
 *                               CH_ADD, CH_DEL, BIND, UNBIND, SESSION_SET)
 *   <prefix>ch.<channel>        CH_PUB, CH_PUB_EX, while a local session is in it
 *   <prefix>u.<uid>             SEND_UID, KICK_UID, while a local session has it
 *   <prefix>q                   the routers' queries (natsq.h), answered from
 *                               what the worker holds
 *   <prefix>who                 a router asking who is there
 * and publishes on <prefix>hb "up <server> <worker> <clients> <channels>"
 * every 3 s, on (re)connect and when asked, and "down <server> <worker>" on a
 * clean stop: the routers' list of workers to wait for. Each message is one
 * router-protocol message, as on the Redis bus. Nothing is kept in NATS: the
 * presence is the workers' own state, so a reconnect has nothing to rewrite
 * but the heartbeat. */
#ifndef FOOKING_NATSLINK_H
#define FOOKING_NATSLINK_H

struct worker;

/* NULL when the URL is bad (logged) or out of memory. */
struct link *natslink_new(struct worker *w);

#endif
