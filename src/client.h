/* client.h - one client connection of a worker: its socket, session id,
 * protocol state, requests in reply order, and channel memberships. */
#ifndef FOOKING_CLIENT_H
#define FOOKING_CLIENT_H

#include <stddef.h>

#include <event2/buffer.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include "backend.h"
#include "channel.h"
#include "sid.h"

struct worker;
struct request;
struct ws_state;
struct conn;

struct shared_msg;
struct evbuffer;

/* What differs between the client protocols (length frames, WebSocket, a Lua
 * protocol script), chosen once at accept. */
struct client_proto {
    int frame; /* enum proto: whose frame header a shared message gets */
    int kind;  /* enum stats_proto: how fooking_clients counts it */
    /* Bytes of state the protocol keeps per client, allocated with it and
     * given by client_proto_state (0: none). */
    size_t state_size;
    /* Sets up a protocol whose session starts later (a WebSocket's handshake):
     * 0, or -1 (out of memory). NULL: the session starts at accept. */
    int (*start)(struct client *c);
    /* New input in `in`: take the messages that are whole. */
    void (*read)(struct client *c, struct evbuffer *in);
    /* One message to the client, framed; the bytes of msg are moved. */
    void (*send)(struct client *c, struct evbuffer *msg);
    /* Fills m->hdr[frame] for a push; 0 when c cannot take pushes yet. NULL:
     * every copy goes through send (a script frames each one itself). */
    int (*shared_header)(struct client *c, struct shared_msg *m);
    /* Goodbye on the wire before a flush-and-close (NULL: nothing to say). */
    void (*close_frame)(struct client *c, int code, const char *reason);
    /* The worker's ping sweep (NULL: the protocol has no pings). */
    void (*ping)(struct client *c);
    /* Frees the protocol's state (NULL: none). */
    void (*free)(struct client *c);
    /* The client is idle: give back buffers that hold nothing (NULL: none). */
    void (*shrink)(struct client *c);
};

extern const struct client_proto client_proto_length, client_proto_script;
extern const struct client_proto wsconn_proto; /* wsconn.c */

struct client {
    TAILQ_ENTRY(client) entry;
    const struct client_proto *proto;
    struct worker *w;
    struct conn *conn;
    char sid[SID_LEN + 1];
    char addr[46];                /* INET6_ADDRSTRLEN */
    unsigned closing : 1;         /* flushing output, then close */
    unsigned dead : 1;            /* closed; freed on the next loop iteration */
    unsigned session_started : 1; /* EVENT=1 time passed: EVENT=2 is owed */
    unsigned paused : 1;          /* not reading: too many requests in flight */
    unsigned script_close : 1;    /* the script called fc.close() */
    unsigned over_limit : 1;      /* output passed MAX_OUTPUT_SIZE: closed at the next safe point */
    unsigned tls_ok : 1;          /* TLS handshake done (SSL = 1) */
    unsigned ip_counted : 1;      /* counted in the shared per-address table */
    unsigned on_asap : 1;         /* on the worker's asap list */
    unsigned resume : 1;          /* start reading again if the reasons to pause are gone */
    unsigned going_away : 1;      /* graceful stop: closed once its requests are answered */
    unsigned close_kind : 4;      /* enum stats_close + 1 when the closer said; 0: by reason */
    int port;
    unsigned pending;               /* requests not yet answered */
    unsigned queued;                /* of those, waiting in the pool's queue */
    TAILQ_HEAD(, request) requests; /* in the order their replies are due */
    struct fcgi_params *params;
    LIST_HEAD(, chan_member) chans; /* channels joined */
    const char *close_reason;
    struct script *script;    /* SCRIPT_FILE it was accepted with (a reference), or NULL */
    struct client_user *user; /* uid and session data (user.h), NULL when neither */
    unsigned mark;            /* a command's stamp: "already served" / "excluded" */
    int shm_slot;             /* index in the worker's shared SID table, -1 if none */
    unsigned nrequest;        /* messages read so far: the scripts' requestid */
    struct event *hs_timer;   /* TLS handshake / first message deadline (not WebSocket) */
    uint8_t ip[16];           /* peer address, IPv4-mapped, for MAX_CONN_PER_IP */
    /* Deferred work, done by client_run_deferred() at a safe point of the loop
     * (never inside a backend or evbuffer callback that called us). */
    TAILQ_ENTRY(client) asap_entry;
    const char *asap_close; /* close, with this reason */
    /* The protocol's state (state_size bytes) follows, in the same block as
     * the client and its connection (conn_new_ext). */
    _Alignas(max_align_t) unsigned char proto_state[];
};

static inline void *client_proto_state(struct client *c)
{
    return c->proto_state;
}

/* A message for many clients (SEND_ALL, CH_PUB, SEND_MSG to many SIDs): the
 * payload is copied once into this refcounted block and every recipient's
 * output references it; the frame header of each client protocol is encoded
 * once, on first use. */
struct shared_msg {
    int refs;
    size_t len;
    uint8_t hdr[2][14]; /* per protocol (enum proto) */
    uint8_t hdrlen[2];
    int framed;        /* protocol whose header is written in `slack`, -1 none */
    uint8_t slack[14]; /* room for that header right before the payload, so the */
    uint8_t data[];    /* frame is one contiguous block: one reference per recipient */
};

/* Messages up to this size (framed) are copied into a recipient's output
 * rather than referenced: the copy is cheaper than a reference's allocation,
 * and packs into the buffer's last block, so many small pushes queued for a
 * slow client cost their bytes, not a block each. */
#define CLIENT_COPY_MAX 256

struct shared_msg *shared_msg_new(const void *data, size_t len);
void shared_msg_unref(struct shared_msg *m);
void client_send_shared(struct client *c, struct shared_msg *m);
/* ms[0..n) in order, as client_send_shared of each would, but as one block of
 * frames per protocol: blocks[proto] is made at the first client of that
 * protocol (from its shared_header) and reused for the others; the caller
 * starts with both NULL and unrefs them at the end. One buffer addition per
 * client for the whole run, not one per message. */
void client_send_shared_run(struct client *c, struct shared_msg *const *ms, size_t n,
                            struct shared_msg *blocks[2]);

/* A new connection speaking proto (client_proto_length, wsconn_proto; a
 * SCRIPT_FILE replaces it with client_proto_script). */
void client_accept(struct worker *w, evutil_socket_t fd, struct sockaddr *sa, int salen,
                   const struct client_proto *proto);
/* TCP_NODELAY and keepalive (60 s idle, 10 s apart, 6 probes) on the listening
 * socket, for every connection it accepts. */
void client_listener_options(evutil_socket_t fd);
/* Frees the clients closed since the last call, then runs the deferred closes
 * and resumes (see asap_entry). Only from the top of the loop. */
void client_run_deferred(struct worker *w);
/* Whether c may take one more message now: not closing, under its limits of
 * requests in flight and of queued requests, output under MAX_OUTPUT_SIZE. */
int client_can_take(const struct client *c);
/* Largest input held for one client: one message of MAX_BUFF_SIZE plus its
 * framing, or a WebSocket handshake head. Reads stop at this many bytes. */
size_t client_input_limit(const struct config *cfg);
/* The input and output limits of cfg (at accept, and for a reload). */
void client_limits(struct client *c, const struct config *cfg);
/* The session is established (at accept, or after a WebSocket handshake):
 * posts EVENT=1 when configured. */
void client_session_start(struct client *c);
/* The first n bytes of msg are one complete message from the client: they
 * move out of msg into a FastCGI request (whole blocks move without a copy). */
void client_message(struct client *c, struct evbuffer *msg, size_t n);
/* Closes now; reason is logged, and counted under the kind of close it names
 * (enum stats_close) unless c->close_kind says already. */
void client_close(struct client *c, const char *reason);
/* Graceful stop: no longer read; closed (WebSocket: 1001) once the requests
 * in flight are answered. Returns 1 if c started going away now. */
int client_going_away(struct client *c);
/* Writes what is pending, then closes (kick). */
void client_close_after_flush(struct client *c, const char *reason);
/* The same, with WebSocket close code and frame_reason (NUL-terminated, at
 * most 123 bytes) in the close frame; why is logged (a string that lives on). */
void client_close_code(struct client *c, int code, const char *frame_reason, const char *why);
/* Sends one message framed by the client's protocol. The bytes of msg are moved
 * (msg is left empty). */
void client_send(struct client *c, struct evbuffer *msg);
/* Appends a frame header and a message to a client's output: small messages
 * are copied, large ones moved (msg is left empty). */
void client_output_add(struct evbuffer *out, const void *hdr, size_t hlen, struct evbuffer *msg);

#endif
