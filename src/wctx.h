/* wctx.h - a worker as the modules it wires together see it: its state
 * (struct worker) and the services it offers them (struct worker_hooks),
 * reached through function pointers that worker.c fills in. client.c,
 * channel.c, user.c, command.c and the links include this, never worker.h:
 * the worker knows its modules, they do not know it back (DESIGN §10). */
#ifndef FOOKING_WCTX_H
#define FOOKING_WCTX_H

#include <stddef.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <sys/queue.h>
#include <time.h>

#include "config.h"
#include "shm.h"
#include "sid.h"

struct client;
struct request;
struct worker;

/* What a worker does when its modules tell it something. */
struct worker_hooks {
    /* client.c: clients come and go; a session is established (routable by
     * SID, announced to the links); a close event (EVENT=2) to post, now or
     * paced while the worker stops. */
    void (*client_added)(struct worker *w, struct client *c);
    void (*client_removed)(struct worker *w, struct client *c);
    void (*session_started)(struct worker *w, struct client *c);
    void (*close_event)(struct worker *w, struct request *r);
    /* channel.c: channel name got its first member (used = 1) or lost its
     * last (used = 0); a session joined or left one. */
    void (*channel_used)(struct worker *w, const char *name, size_t len, int used);
    void (*member_changed)(struct worker *w, struct client *c, const char *name, size_t len,
                           int joined);
    /* user.c: a session's uid (old: the one before, NULL if none) or its data
     * changed. */
    void (*uid_changed)(struct worker *w, struct client *c, const void *old, size_t oldlen);
    void (*session_changed)(struct worker *w, struct client *c);
    /* command.c: a v2 report to every link (link_ops.report). */
    void (*report)(struct worker *w, int type, const void *s, size_t slen, const void *d,
                   size_t dlen);
    /* client.c: a reply with commands (r->cmds) is due for c: carry them out
     * and deliver its body (reply.c). */
    void (*reply)(struct worker *w, struct client *c, struct request *r);
    /* reply.c: a command for the whole cluster (a reply's Publish or
     * Broadcast) through the first link that has link_ops.publish, or carried
     * out here when the worker has no link at all. 0, or -1 when the link
     * could not take it. */
    int (*publish)(struct worker *w, int type, const void *s, size_t slen, const void *d,
                   size_t dlen);
};

struct backend_pool;
struct backend_pool_pending;
struct fcgi_params;

struct worker {
    const struct worker_hooks *hooks; /* worker.c's */
    struct event_base *base;
    struct config *cfg;
    int id;
    struct shm_block *shm;
    struct worker_stats *stats; /* its slot's, in shm: for the master's /metrics */
    struct sid_gen sids;
    struct evconnlistener *listener;
    struct backend_pool *pool;
    struct backend_pool_pending *reloading; /* a reload's pool, names resolving */
    struct config *reload_cfg;              /* ... and its config, until it is ready */
    int cfg_owned;                          /* cfg came from a reload: free it */
    TAILQ_HEAD(, client) clients;
    int nclients;
    const struct timeval *idle_tv; /* common timeout for IDLE_TIME */
    struct hmap *by_sid;           /* SID -> client */
    struct hmap *by_uid;           /* uid -> struct uid_group (user.h) */
    unsigned mark;                 /* the last stamp a command gave clients (client.mark) */
    struct hmap *channels;         /* name -> struct channel */
    struct link *links;            /* router (ROUTER_HOST), then bus (BUS); see link.h */
    struct event *sig_term, *sig_int, *sig_hup, *sig_usr1, *sig_usr2, *sig_quit;
    struct event *accept_resume; /* re-enables accept after EMFILE */
    struct event *stop_timer;
    struct event *trim;    /* malloc_trim every LOOP_TRIM_SECONDS */
    struct event *ping;    /* WebSocket ping sweep, every PING_INTERVAL */
    struct event *shrink;  /* idle clients' empty buffers freed, every second */
    void *ssl_ctx;         /* SSL_CTX when SSL = 1 */
    struct script *script; /* SCRIPT_FILE state */
    int stopping;
    int static_fd; /* STATIC_DIR, opened once; -1 without */
    /* Live SIDs in shared memory (see shm.h), with a local free list. */
    struct shm_sessions *sessions;
    uint32_t *free_slots;
    size_t nfree, free_cap;
    int sessions_full_logged;
    /* Sessions a dead predecessor left: their close events are posted gradually. */
    uint32_t *orphans; /* their slots in the shared table */
    size_t norphans, orphans_done;
    struct event *orphan_timer;
    /* Close events owed by clients closed while stopping: posted at the pace
     * the backend queue allows, like the orphans. */
    struct request **owed;
    size_t nowed, owed_done, owed_cap;
    TAILQ_HEAD(, client) asap;    /* clients with deferred work (client_run_deferred) */
    TAILQ_HEAD(, client) closing; /* closed, not unlinked yet (client_run_deferred) */
    TAILQ_HEAD(, client) closed;  /* unlinked, freed by client_run_deferred */
    struct event *asap_ev;
    const struct timeval *handshake_tv; /* common timeout for HANDSHAKE_TIMEOUT */
    time_t ip_refused_logged;           /* last MAX_CONN_PER_IP refusal logged */
    char server_addr[48];               /* SERVER_ADDR of the listening socket */
    char server_port[8];                /* SERVER_PORT */
    int server_addr_wild;               /* listening on a wildcard address */
    int server_addr_per_conn;           /* ... so SERVER_ADDR is each connection's */
    int draining;                       /* SIGQUIT: closing clients over GRACEFUL_STOP_TIME */
    int drain_total, drain_done;        /* clients when it began, closed since */
    double drain_started;               /* monotonic seconds */
    struct event *drain_timer;
};

/* The services, as calls. */
static inline void worker_client_added(struct worker *w, struct client *c)
{
    w->hooks->client_added(w, c);
}
static inline void worker_client_removed(struct worker *w, struct client *c)
{
    w->hooks->client_removed(w, c);
}
static inline void worker_session_started(struct worker *w, struct client *c)
{
    w->hooks->session_started(w, c);
}
static inline void worker_close_event(struct worker *w, struct request *r)
{
    w->hooks->close_event(w, r);
}
static inline void worker_channel_used(struct worker *w, const char *name, size_t len, int used)
{
    w->hooks->channel_used(w, name, len, used);
}
static inline void worker_member_changed(struct worker *w, struct client *c, const char *name,
                                         size_t len, int joined)
{
    w->hooks->member_changed(w, c, name, len, joined);
}
static inline void worker_uid_changed(struct worker *w, struct client *c, const void *old,
                                      size_t oldlen)
{
    w->hooks->uid_changed(w, c, old, oldlen);
}
static inline void worker_session_changed(struct worker *w, struct client *c)
{
    w->hooks->session_changed(w, c);
}
static inline void worker_report(struct worker *w, int type, const void *s, size_t slen,
                                 const void *d, size_t dlen)
{
    w->hooks->report(w, type, s, slen, d, dlen);
}
static inline void worker_reply(struct worker *w, struct client *c, struct request *r)
{
    w->hooks->reply(w, c, r);
}
static inline int worker_publish(struct worker *w, int type, const void *s, size_t slen,
                                 const void *d, size_t dlen)
{
    return w->hooks->publish(w, type, s, slen, d, dlen);
}

#endif
