/* reply.h - reply commands (DESIGN §13): the X-Fooking-* headers of a
 * backend's reply, carried out for the session the reply is for when it is
 * delivered, in the client's request order. fcgi.c parses them (a pure codec),
 * backend.c keeps them with the request (r->cmds), this module acts on them. */
#ifndef FOOKING_REPLY_H
#define FOOKING_REPLY_H

struct worker;
struct client;
struct request;

/* Applies r's commands for c and delivers r's body: first the joins, binds
 * and session data (in the order the headers came), then the body (to c, or
 * published to channels or to everyone through the worker's links), then the
 * leaves, then a close. A malformed command is logged with c's SID and
 * skipped; the others, and the body, go on. */
void reply_deliver(struct worker *w, struct client *c, struct request *r);

#endif
