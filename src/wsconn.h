/* wsconn.h - the WebSocket side of a client connection (PROTOCOL = "websocket"):
 * handshake, static files for plain GETs, frames in and out, ping/pong, the
 * close handshake. The byte-level work is ws.c's; this module owns the timers
 * and decides what to answer. */
#ifndef FOOKING_WSCONN_H
#define FOOKING_WSCONN_H

#include <event2/buffer.h>
#include <stddef.h>
#include <stdint.h>

struct client;
struct shared_msg;

/* Sets up the handshake state and its deadline. 0, or -1 (out of memory). */
int wsconn_start(struct client *c);
void wsconn_free(struct client *c);
/* New input on the socket. */
void wsconn_read(struct client *c);
/* One message to the client, as one text (or binary) frame. msg is moved. */
void wsconn_send(struct client *c, struct evbuffer *msg);
/* Starts the close handshake with code and reason (kick, shutdown); the caller
 * then flushes and closes. */
void wsconn_close_frame(struct client *c, int code, const char *reason);
/* The worker's ping sweep (every PING_INTERVAL): closes a client silent since
 * the last sweep, pings the others. */
void wsconn_ping(struct client *c);
/* 1 once the handshake is done and messages may flow. */
int wsconn_open(struct client *c);

#endif
