/* backend.h - the FastCGI side of a worker: a pool of backend servers with
 * weighted choice, keepalive connections, a per-server connection cap and a
 * bounded queue, and the requests in flight. */
#ifndef FOOKING_BACKEND_H
#define FOOKING_BACKEND_H

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <stdint.h>
#include <sys/queue.h>

#include "config.h"
#include "fcgi.h"
#include "sid.h"
#include "stats.h"

struct backend_conn;
struct backend_pool;

/* Params that stay the same for every request of one client (SESSIONID,
 * REMOTE_ADDR, handshake headers, ...), encoded once as FastCGI name-value
 * pairs and shared by its requests; refcounted because a request can outlive
 * its client (the close event, replies nobody waits for any more). */
struct fcgi_params {
    int refs;
    size_t len, cap; /* bytes used, bytes allocated for data */
    uint8_t data[];
};

struct fcgi_params *fcgi_params_new(const struct fcgi_params *base, size_t extra);
void fcgi_params_add(struct fcgi_params **p, const char *name, const char *value, size_t vlen);
/* Gives back the room left after the last add (a session's block, once built). */
void fcgi_params_fit(struct fcgi_params **p);
struct fcgi_params *fcgi_params_ref(struct fcgi_params *p);
void fcgi_params_unref(struct fcgi_params *p);

enum request_event { EVENT_MESSAGE = 0, EVENT_CONNECT = 1, EVENT_CLOSE = 2 };

struct request;

/* What the pool tells whoever posted a request (the client module, in a
 * worker); the pool knows nothing else of it, as nginx's upstream finishes
 * through finalize_request. */
struct request_ops {
    /* The pool is done with r (success or failure); r now belongs to the owner. */
    void (*done)(struct request *r);
    /* r entered (+1) or left (-1) the pool's wait queue. Called from deep in
     * the pool: it may only count, never post or free. */
    void (*queued)(struct request *r, int delta);
};

struct request {
    TAILQ_ENTRY(request) owner_entry; /* in its owner's reply order, or in the free list */
    TAILQ_ENTRY(request) queue_entry; /* in the pool's wait queue */
    void *owner;                      /* NULL: nobody waits (freed when done) */
    const struct request_ops *ops;
    struct backend_pool *pool;
    struct backend_conn *conn;  /* while on a connection */
    struct fcgi_params *params; /* the client's constant params (a reference) */
    struct evbuffer *body;      /* the message, until written (the poster fills it) */
    struct evbuffer *reply;     /* STDOUT body received so far */
    struct cgi_parser cgi;
    /* The reply's commands (X-Fooking-* headers), NULL when it has none: one
     * record per header line, "'@' + cmd | value | cut byte | LF" (a value
     * has no LF). Only for a request somebody waits for. */
    struct evbuffer *cmds;
    int cmds_lost; /* out of memory keeping them: none are applied */
    char sid[SID_LEN + 1];
    enum request_event event;
    struct event queue_ev; /* BACKEND_QUEUE_TIMEOUT while queued (not for EVENT_CLOSE) */
    uint64_t tried;        /* bit per server already tried */
    uint64_t posted_ns;    /* when backend_post took it (monotonic), for its duration */
    int queued, done, failed, explicit_empty;
};

/* The next record of r->cmds at *p (up to end): 1 with the command, its value
 * and whether it was cut (CGI_MAX_CMD_LINE); 0 at the end (a record begun but
 * never ended, of a reply cut short, is not one). */
int request_cmd_next(const uint8_t **p, const uint8_t *end, int *cmd, const uint8_t **value,
                     size_t *len, int *cut);

/* owner and ops may be NULL (a close event nobody waits for). r->body is
 * empty: the poster moves the message into it before backend_post.
 *
 * Requests are recycled: request_free keeps up to REQUEST_FREE_MAX of them,
 * their body and reply buffers drained but kept, on a free list of the
 * process (not of a pool: a request outlives a pool retired by a reload), so
 * that a message in steady state allocates no request. */
#define REQUEST_FREE_MAX 256
struct request *request_new(struct backend_pool *pool, void *owner, const struct request_ops *ops,
                            const char *sid, struct fcgi_params *params, enum request_event ev);
void request_free(struct request *r);
/* Frees the free list, and every request freed from now on (a worker going away). */
void request_free_list_drop(void);

/* The pool takes ownership of static_params (FASTCGI_PARAMS, encoded). */
struct backend_pool *backend_pool_new(struct event_base *base, const struct config *cfg,
                                      struct fcgi_params *static_params);
/* The same for a reload, while the loop serves clients: host names are
 * resolved with evdns instead of the blocking resolver (numeric addresses and
 * unix: paths need none). done is called exactly once, always later from the
 * loop (never from inside this call): with the new pool, which it then owns,
 * or with NULL and a message naming the server (already logged). Returns NULL
 * when the pool cannot be set up at all (logged; done is not called). Takes
 * static_params in every case; cfg need not outlive this call. */
struct backend_pool_pending;
typedef void (*backend_pool_ready_cb)(struct backend_pool *p, const char *err, void *arg);
struct backend_pool_pending *backend_pool_new_async(struct event_base *base,
                                                    const struct config *cfg,
                                                    struct fcgi_params *static_params,
                                                    backend_pool_ready_cb done, void *arg);
/* Drops a pool still resolving (a newer reload, the worker stopping): done
 * is not called. */
void backend_pool_new_cancel(struct backend_pool_pending *pp);
/* Reload: requests still waiting move to `fresh`; those in flight finish on
 * `old`, which frees itself after its last connection closes. */
void backend_pool_retire(struct backend_pool *old, struct backend_pool *fresh);
void backend_pool_free(struct backend_pool *p);
/* Hands the request to the pool. It is sent now, or queued; if it cannot be
 * (queue full, no server), it completes at once as failed. Either way the pool
 * calls r->ops->done (or frees r when it has no owner). */
void backend_post(struct backend_pool *p, struct request *r);
/* The owner is going away: the request stays in flight but its reply is dropped. */
void backend_detach(struct request *r);
/* Smooth weighted round robin (as nginx): every eligible server (bit i of
 * `eligible` for w[i]) gains its weight, the richest is picked and pays the
 * total, so weights 3:1 give a a b a, a a b a, ... Pure, for the pool and its
 * tests. Returns the index picked, -1 when none is eligible. */
struct backend_wrr {
    int weight, current;
};
int backend_wrr_pick(struct backend_wrr *w, int n, uint64_t eligible);
/* Where the pool counts its requests' outcomes, durations and queue (the
 * worker's shared memory); until called, a dummy of the process. A pool
 * retired by a reload counts on in the same place as its successor. */
void backend_pool_set_stats(struct backend_pool *p, struct backend_stats *st);
/* How many queued requests one client may have: BACKEND_QUEUE_SIZE / 16, at least 1. */
int backend_client_share(const struct backend_pool *p);
/* Counts for logs and INFO. */
void backend_pool_stats(struct backend_pool *p, int *conns, int *idle, int *queued);

#endif
