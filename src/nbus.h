/* nbus.h - a NATS connection for the message bus (BUS = "nats://..."), through
 * libnats and its libevent adapter on the caller's loop.
 *
 * libnats reads and writes the socket from the loop, but hands each message
 * to its own delivery thread. That thread only queues the message (bounded:
 * NBUS_QUEUE_MAX bytes) and wakes the loop, which runs the handler: a
 * handler always runs on the loop thread, in the order the server sent.
 * Connection events (up, down) come through the same queue, in order with the
 * messages.
 *
 * libnats fails over along the server list and subscribes everything again
 * after a reconnect by itself. A connection it gives up (it does on an
 * authorization error) is made anew here, with a back-off, and everything
 * subscribed again on it. While the connection is down nothing queues up:
 * publishes are dropped (counted, logged), like the Redis bus's. */
#ifndef FOOKING_NBUS_H
#define FOOKING_NBUS_H

#include <stddef.h>

#include <event2/event.h>

#include "counter.h"

struct nbus;
struct nbus_sub;

/* Up to this many subscription tags (the handler's "which subscription"). */
#define NBUS_TAGS 8
/* A whole subject: prefix (127), a tag, a name of 255 bytes escaped (3 each). */
#define NBUS_SUBJECT_MAX 1024
/* Messages waiting for the loop, payload and slot bytes; past it they are dropped. */
#define NBUS_QUEUE_MAX   (64u << 20)
#define NBUS_SERVERS_MAX 16

struct nbus_handlers {
    void *arg;
    /* Connected (first time or again): what the far side keeps of us, anew.
     * The subscriptions were sent again by libnats before this. */
    void (*up)(void *arg);
    /* Disconnected (NULL: not told): what comes for us until up is lost. */
    void (*down)(void *arg);
    /* A message on a subscription made with tag; reply is its reply subject
     * (NULL: none). data is valid during the call only. */
    void (*message)(void *arg, int tag, const char *subject, const char *reply, const char *data,
                    size_t len);
};

/* Checks "nats://[user:pass@|token@]host:port[,host:port...]". 0, or -1 with
 * a message in err. */
int nbus_parse_url(const char *url, char *err, size_t errlen);
/* 1 when url names a NATS bus ("nats://"). */
int nbus_is_nats(const char *url);
/* Once per process, before its event base is made: libnats touches the loop
 * from its own threads, so libevent must lock. */
void nbus_global_init(void);

/* Connects (asynchronously: failing now, it keeps trying). name is what the
 * server's monitoring shows for the connection. NULL when out of memory or
 * the URL is bad (logged). link_timeout > 0: the server is pinged every
 * link_timeout / 3 s and the connection dropped after two unanswered. */
struct nbus *nbus_new(struct event_base *base, const char *url, const char *prefix,
                      int link_timeout, const char *name, const struct nbus_handlers *h);
void nbus_free(struct nbus *b);
void nbus_set_counters(struct nbus *b, struct bus_counters *c);
const char *nbus_prefix(const struct nbus *b);
int nbus_ready(const struct nbus *b);

/* "<prefix><kind><name escaped>" into out[NBUS_SUBJECT_MAX]: name's bytes
 * outside [A-Za-z0-9_-] are written %XX, so '.', '*', '>', spaces and '%'
 * cannot break the subject; the empty name is "%". kind names a subject of
 * its own ("all") when name is NULL. Returns its length. */
size_t nbus_subject(const struct nbus *b, char out[NBUS_SUBJECT_MAX], const char *kind,
                    const void *name, size_t len);
/* The same from a prefix (the pure part, for tests and the router). */
size_t nbus_subject_for(const char *prefix, char out[NBUS_SUBJECT_MAX], const char *kind,
                        const void *name, size_t len);

/* Subscribes to a whole subject (from nbus_subject); queue: a queue group
 * (one member gets each message) or NULL. NULL when it failed (logged). */
struct nbus_sub *nbus_subscribe(struct nbus *b, const char *subject, const char *queue, int tag);
void nbus_unsubscribe(struct nbus_sub *s);

/* Publishes hdr + body on subject (reply: its reply subject, or NULL). 0, or
 * -1 when it was dropped: down, or libnats refused it (logged, counted). */
int nbus_publish(struct nbus *b, const char *subject, const char *reply, const void *hdr,
                 size_t hlen, const void *body, size_t blen);
/* A subject unique to this connection, for answers: "_INBOX.<id>". */
const char *nbus_inbox(const struct nbus *b);
/* The largest payload the server takes (its max_payload), 1 MiB until known. */
size_t nbus_max_payload(const struct nbus *b);

#endif
