/* worker.c - a worker process: owns one event loop and everything on it.
 *
 * The master opened the listening socket; every worker accepts on it. On
 * SIGTERM a worker stops accepting and closes its clients; their close events
 * are posted at the pace the backend queue allows (closing 50,000 clients
 * must not mean 50,000 requests thrown at a full queue), and the worker exits
 * once the backend has answered them all, or after WORKER_STOP_GRACE_MS. */
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <event2/buffer.h>

#include "backend.h"
#include "buslink.h"
#include "natslink.h"
#include "nbus.h"
#include "channel.h"
#include "client.h"
#include "command.h"
#include "conn.h"
#include "hmap.h"
#include "link.h"
#include "log.h"
#include "loop.h"
#include "netaddr.h"
#include "proc.h"
#include "reply.h"
#include "rmsg.h"
#include "script.h"
#include "uplink.h"
#include "ws.h"
#include "user.h"
#include "wsconn.h"

/* Within the master's MASTER_STOP_GRACE_SECONDS, which then kills. */
#define WORKER_STOP_GRACE_MS 10000
/* Close events posted per pacing turn at most, and the pause between turns. */
#define WORKER_PACE_BATCH 256
#define WORKER_PACE_USEC  10000

static void worker_accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                             int salen, void *arg)
{
    struct worker *w = arg;
    (void)l;
    if (w->stopping) {
        evutil_closesocket(fd);
        return;
    }
    client_accept(w, fd, sa, salen,
                  w->cfg->protocol == PROTO_WEBSOCKET ? &wsconn_proto : &client_proto_length);
}

static void worker_accept_resume(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    (void)fd;
    (void)what;
    if (!w->stopping)
        evconnlistener_enable(w->listener);
}

static void worker_accept_error(struct evconnlistener *l, void *arg)
{
    struct worker *w = arg;
    int err = EVUTIL_SOCKET_ERROR();
    (void)l;
    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        /* Out of descriptors: pause accepting briefly instead of spinning. */
        log_err("worker %d: accept: %s; pausing accepts for 100 ms", w->id,
                evutil_socket_error_to_string(err));
        evconnlistener_disable(w->listener);
        struct timeval tv = {0, 100000};
        evtimer_add(w->accept_resume, &tv);
    } else {
        log_err("worker %d: accept: %s", w->id, evutil_socket_error_to_string(err));
    }
}

static void worker_on_client_added(struct worker *w, struct client *c)
{
    TAILQ_INSERT_TAIL(&w->clients, c, entry);
    w->nclients++;
    gauge_add(&w->stats->clients[c->proto->kind], 1);
    atomic_fetch_add(&w->shm->workers[w->id].clients, 1);
}

/* Records a live SID in the shared table, so a successor can post its close
 * event if this worker dies. */
static void worker_session_track(struct worker *w, struct client *c)
{
    struct shm_sessions *t = w->sessions;
    uint32_t slot;
    if (w->nfree > 0) {
        slot = w->free_slots[--w->nfree];
    } else if (t->used < SHM_SESSIONS_PER_WORKER) {
        slot = t->used++;
    } else {
        if (!w->sessions_full_logged++)
            log_err("worker %d: more than %d sessions: the excess is not tracked for close "
                    "events after a crash",
                    w->id, SHM_SESSIONS_PER_WORKER);
        return;
    }
    memcpy(t->sid[slot], c->sid, SID_LEN);
    c->shm_slot = (int)slot;
}

static void worker_slot_release(struct worker *w, uint32_t slot)
{
    w->sessions->sid[slot][0] = '\0';
    if (w->nfree == w->free_cap) {
        size_t cap = w->free_cap ? w->free_cap * 2 : 1024;
        uint32_t *n = realloc(w->free_slots, cap * sizeof(*n));
        if (!n)
            return; /* the slot stays unused until the table is reset: harmless */
        w->free_slots = n;
        w->free_cap = cap;
    }
    w->free_slots[w->nfree++] = slot;
}

static void worker_session_untrack(struct worker *w, struct client *c)
{
    if (c->shm_slot < 0)
        return;
    worker_slot_release(w, (uint32_t)c->shm_slot);
    c->shm_slot = -1;
}

/* Adds l at the end of the worker's links: every link hears of every change,
 * in the order the links were added. -1 when l is NULL (its constructor
 * failed). */
static int worker_link_add(struct worker *w, struct link *l)
{
    struct link **p = &w->links;
    if (!l)
        return -1;
    while (*p)
        p = &(*p)->next;
    *p = l;
    return 0;
}

static void worker_links_conn(struct worker *w, struct client *c)
{
    for (struct link *l = w->links; l; l = l->next)
        l->ops->conn(l, c);
}

static void worker_links_close(struct worker *w, struct client *c)
{
    for (struct link *l = w->links; l; l = l->next)
        l->ops->close(l, c);
}

static void worker_links_stop(struct worker *w)
{
    for (struct link *l = w->links; l; l = l->next)
        if (l->ops->stop)
            l->ops->stop(l);
}

static void worker_links_free(struct worker *w)
{
    struct link *l, *next;
    for (l = w->links; l; l = next) {
        next = l->next;
        l->ops->free(l);
    }
    w->links = NULL;
}

static void worker_on_report(struct worker *w, int type, const void *s, size_t slen, const void *d,
                             size_t dlen)
{
    for (struct link *l = w->links; l; l = l->next)
        if (l->ops->report)
            l->ops->report(l, type, s, slen, d, dlen);
}

static void worker_on_uid_changed(struct worker *w, struct client *c, const void *old,
                                  size_t oldlen)
{
    for (struct link *l = w->links; l; l = l->next)
        if (l->ops->uid)
            l->ops->uid(l, c, old, oldlen);
}

static void worker_on_session_changed(struct worker *w, struct client *c)
{
    for (struct link *l = w->links; l; l = l->next)
        if (l->ops->session)
            l->ops->session(l, c);
}

static void worker_on_member_changed(struct worker *w, struct client *c, const char *name,
                                     size_t len, int joined)
{
    for (struct link *l = w->links; l; l = l->next)
        if (l->ops->member)
            l->ops->member(l, c, name, len, joined);
}

static void worker_on_channel_used(struct worker *w, const char *name, size_t len, int used)
{
    for (struct link *l = w->links; l; l = l->next) {
        if (used)
            l->ops->ch_sub(l, name, len);
        else
            l->ops->ch_unsub(l, name, len);
    }
}

static void worker_on_session_started(struct worker *w, struct client *c)
{
    hmap_put(w->by_sid, c->sid, SID_LEN, c, NULL);
    worker_session_track(w, c);
    worker_links_conn(w, c);
}

static void worker_on_client_removed(struct worker *w, struct client *c)
{
    if (c->session_started) {
        channel_leave_all(w, c);
        hmap_del(w->by_sid, c->sid, SID_LEN, NULL);
        worker_session_untrack(w, c);
        worker_links_close(w, c);
    }
    TAILQ_REMOVE(&w->clients, c, entry);
    w->nclients--;
    gauge_add(&w->stats->clients[c->proto->kind], -1);
    atomic_fetch_sub(&w->shm->workers[w->id].clients, 1);
    atomic_fetch_sub(&w->shm->clients, 1);
}

static void worker_stop_check(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    (void)fd;
    (void)what;
    int conns, idle, queued;
    backend_pool_stats(w->pool, &conns, &idle, &queued);
    int owed = w->owed_done < w->nowed;
    if (!owed && conns - idle == 0 && queued == 0) {
        event_base_loopexit(w->base, NULL);
    } else if (++w->stopping * 50 > WORKER_STOP_GRACE_MS) {
        log_err("worker %d: stop grace of %d ms over: %zu close events not posted, %d requests "
                "unanswered",
                w->id, WORKER_STOP_GRACE_MS, w->nowed - w->owed_done, conns - idle + queued);
        event_base_loopexit(w->base, NULL);
    }
}

static void worker_asap_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    client_run_deferred(arg);
}

static void worker_pace_start(struct worker *w)
{
    if (!evtimer_pending(w->orphan_timer, NULL))
        event_active(w->orphan_timer, EV_TIMEOUT, 0);
}

static void worker_on_close_event(struct worker *w, struct request *r)
{
    if (!w->stopping && !w->draining) {
        backend_post(w->pool, r);
        return;
    }
    if (w->nowed == w->owed_cap) {
        size_t cap = w->owed_cap ? w->owed_cap * 2 : 1024;
        struct request **n = realloc(w->owed, cap * sizeof(*n));
        if (!n) {
            backend_post(w->pool, r); /* at worst as before: the queue may drop it */
            return;
        }
        w->owed = n;
        w->owed_cap = cap;
    }
    w->owed[w->nowed++] = r;
    worker_pace_start(w);
}

static void worker_on_reply(struct worker *w, struct client *c, struct request *r)
{
    reply_deliver(w, c, r);
}

/* Names the gateway itself as the sender in the executor's logs when a
 * reply's publish is carried out here (a worker without links). */
static const struct link_ops worker_self_ops;
static struct link worker_self = {&worker_self_ops, "reply command", NULL};

static int worker_on_publish(struct worker *w, int type, const void *s, size_t slen, const void *d,
                             size_t dlen)
{
    for (struct link *l = w->links; l; l = l->next)
        if (l->ops->publish)
            return l->ops->publish(l, type, s, slen, d, dlen);
    if (w->links != NULL)
        return -1;
    struct rmsg m = {(uint16_t)type, (uint16_t)slen, (uint32_t)dlen, s, d};
    command_run(w, &worker_self, &m);
    command_flush(w);
    return 0;
}

/* What this worker does when its modules tell it something (wctx.h). */
static const struct worker_hooks worker_hooks = {
    .client_added = worker_on_client_added,
    .client_removed = worker_on_client_removed,
    .session_started = worker_on_session_started,
    .close_event = worker_on_close_event,
    .channel_used = worker_on_channel_used,
    .member_changed = worker_on_member_changed,
    .uid_changed = worker_on_uid_changed,
    .session_changed = worker_on_session_changed,
    .report = worker_on_report,
    .reply = worker_on_reply,
    .publish = worker_on_publish,
};

static struct fcgi_params *worker_static_params(struct worker *w, const struct config *cfg);

/* Every second: clients whose buffers are empty give them back, so an idle
 * connection holds no buffer (a busy one makes them again at its next
 * message: one allocation a second, not one a message). */
static void worker_shrink_cb(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    struct client *c;
    (void)fd;
    (void)what;
    loop_mem_trim();
    TAILQ_FOREACH(c, &w->clients, entry)
    {
        if (c->dead)
            continue;
        conn_shrink(c->conn);
        if (c->proto->shrink)
            c->proto->shrink(c);
    }
}

/* PING_INTERVAL: one sweep over the worker's clients instead of a timer each. */
static void worker_ping_cb(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    struct client *c, *next;
    (void)fd;
    (void)what;
    for (c = TAILQ_FIRST(&w->clients); c; c = next) {
        next = TAILQ_NEXT(c, entry);
        if (c->proto->ping)
            c->proto->ping(c);
    }
}

/* Posts owed close events, a batch at a time while the backend queue has
 * room, so a crash or a stop with 50,000 clients does not turn into 50,000
 * requests dropped by a full queue: first those of clients this worker closed
 * while stopping (they carry the session's params), then the sessions a dead
 * predecessor held (only their SIDs are known). */
static void worker_orphans_cb(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    (void)fd;
    (void)what;
    int conns, idle, queued;
    backend_pool_stats(w->pool, &conns, &idle, &queued);
    int room = w->cfg->backend_queue_size / 2;
    for (int n = 0; n < WORKER_PACE_BATCH && queued < room && w->owed_done < w->nowed; n++) {
        backend_post(w->pool, w->owed[w->owed_done++]);
        backend_pool_stats(w->pool, &conns, &idle, &queued);
    }
    if (w->owed_done < w->nowed) {
        struct timeval tv = {0, WORKER_PACE_USEC};
        evtimer_add(w->orphan_timer, &tv);
        return;
    }
    char name[96];
    snprintf(name, sizeof(name), "%sSESSIONID", w->cfg->fastcgi_prefix);
    for (int n = 0; n < WORKER_PACE_BATCH && queued < room && w->orphans_done < w->norphans;
         n++, queued++) {
        char sid[SID_LEN + 1];
        uint32_t slot = w->orphans[w->orphans_done++];
        memcpy(sid, w->sessions->sid[slot], SID_LEN);
        sid[SID_LEN] = '\0';
        /* Cleared once posted: if this worker dies too, its successor posts
         * only what is still owed. */
        worker_slot_release(w, slot);
        struct fcgi_params *p = fcgi_params_new(NULL, 64);
        fcgi_params_add(&p, name, sid, SID_LEN);
        struct request *r = request_new(w->pool, NULL, NULL, sid, p, EVENT_CLOSE);
        fcgi_params_unref(p);
        backend_post(w->pool, r);
        backend_pool_stats(w->pool, &conns, &idle, &queued);
    }
    if (w->orphans_done < w->norphans) {
        struct timeval tv = {0, WORKER_PACE_USEC};
        evtimer_add(w->orphan_timer, &tv);
    } else if (w->norphans > 0) {
        log_info("worker %d: posted close events for %zu sessions of the previous worker", w->id,
                 w->norphans);
        free(w->orphans);
        w->orphans = NULL;
        w->norphans = w->orphans_done = 0;
    }
}

/* Takes over the slot's shared SID table: what is left in it belonged to a
 * predecessor that died without closing those sessions. Their entries stay
 * until their close events are posted; new sessions use other slots. */
static void worker_adopt_sessions(struct worker *w)
{
    struct shm_sessions *t = w->sessions;
    size_t n = 0;
    for (uint32_t i = 0; i < t->used; i++)
        if (t->sid[i][0])
            n++;
    if (n == 0 || !w->cfg->event_close || !(w->orphans = malloc(n * sizeof(uint32_t)))) {
        t->used = 0;
        return;
    }
    for (uint32_t i = 0; i < t->used; i++) {
        if (t->sid[i][0])
            w->orphans[w->norphans++] = i;
        else
            worker_slot_release(w, i);
    }
    log_info("worker %d: the previous worker left %zu sessions; posting their close events", w->id,
             n);
    event_active(w->orphan_timer, EV_TIMEOUT, 0);
}

static void worker_reload_ready(struct backend_pool *pool, const char *perr, void *arg);

static void worker_reload_drop(struct worker *w)
{
    backend_pool_new_cancel(w->reloading);
    w->reloading = NULL;
    if (w->reload_cfg) {
        config_free(w->reload_cfg);
        free(w->reload_cfg);
        w->reload_cfg = NULL;
    }
}

/* SIGHUP: re-read the config and apply what can change under live clients:
 * backends and their settings, FastCGI params, log level and file, limits and
 * timeouts for new clients. The listening address, the worker count and the
 * router address need a restart. */
static void worker_reload(struct worker *w)
{
    char err[1024];
    if (w->reloading) {
        log_info("worker %d: reload: the previous one was still resolving names; this one wins",
                 w->id);
        worker_reload_drop(w);
    }
    struct config *fresh = calloc(1, sizeof(*fresh));
    if (!fresh || config_load(fresh, w->cfg->file, err, sizeof(err)) < 0) {
        log_err("worker %d: reload failed: %s", w->id, fresh ? err : "out of memory");
        free(fresh);
        return;
    }
    /* Backend names are resolved with evdns: the loop keeps serving clients
     * meanwhile; the reload goes on in worker_reload_ready. */
    w->reload_cfg = fresh;
    w->reloading = backend_pool_new_async(w->base, fresh, worker_static_params(w, fresh),
                                          worker_reload_ready, w);
    if (!w->reloading) {
        log_err("worker %d: reload failed: cannot set up the new backends", w->id);
        worker_reload_drop(w);
    }
}

static void worker_reload_ready(struct backend_pool *pool, const char *perr, void *arg)
{
    struct worker *w = arg;
    struct config *fresh = w->reload_cfg;
    char err[1024];
    w->reloading = NULL;
    w->reload_cfg = NULL;
    if (!pool) {
        log_err("worker %d: reload refused: %s; the old backends keep serving", w->id, perr);
        config_free(fresh);
        free(fresh);
        return;
    }
    backend_pool_set_stats(pool, &w->stats->backend);
    if (strcmp(fresh->host, w->cfg->host) != 0 || fresh->port != w->cfg->port
        || fresh->worker_num != w->cfg->worker_num)
        log_err("worker %d: reload: HOST, PORT and WORKER_NUM changes need a restart", w->id);
    if (fresh->script_file) {
        struct script *sc = script_load(fresh->script_file, err, sizeof(err));
        if (!sc) {
            log_err("worker %d: reload failed: %s", w->id, err);
            backend_pool_free(pool);
            config_free(fresh);
            free(fresh);
            return;
        }
        script_unref(w->script);
        w->script = sc;
    } else {
        script_unref(w->script);
        w->script = NULL;
    }
    backend_pool_retire(w->pool, pool);
    w->pool = pool;
    if (fresh->idle_time > 0) {
        struct timeval tv = {fresh->idle_time, 0};
        w->idle_tv = event_base_init_common_timeout(w->base, &tv);
    } else {
        w->idle_tv = NULL;
    }
    {
        struct timeval tv = {fresh->handshake_timeout, 0};
        w->handshake_tv = event_base_init_common_timeout(w->base, &tv);
    }
    /* MAX_BUFF_SIZE and MAX_OUTPUT_SIZE are checked against the config in
     * force, so what each client may hold follows them (a raised limit must not
     * leave a connected client unable to read a message the new limit allows). */
    struct client *c;
    TAILQ_FOREACH(c, &w->clients, entry)
    client_limits(c, fresh);
    if (strcmp(fresh->log_file, w->cfg->log_file) != 0)
        log_open(fresh->log_file, fresh->log_level);
    log_set_level(fresh->log_level);
    /* Strings of the old config may still be referenced (the router link's
     * secret is re-read from w->cfg at each reconnect, so that is fine):
     * the old struct is freed only if this worker allocated it. */
    if (w->cfg_owned) {
        config_free(w->cfg);
        free(w->cfg);
    }
    w->cfg = fresh;
    w->cfg_owned = 1;
    log_info("worker %d: configuration reloaded", w->id);
}

/* Stop now: close every client (their close events are paced), then exit
 * once the backend has answered (worker_stop_check). */
static void worker_stop(struct worker *w)
{
    if (w->stopping)
        return;
    log_info("worker %d: stopping, %d clients", w->id, w->nclients);
    w->stopping = 1;
    evconnlistener_disable(w->listener);
    worker_links_stop(w);
    struct client *c;
    TAILQ_FOREACH(c, &w->clients, entry)
    client_close(c, "gateway stopping"); /* close events: worker_close_event */
    client_run_deferred(w);
    struct event *ev = event_new(w->base, -1, EV_PERSIST, worker_stop_check, w);
    struct timeval tv = {0, 50000};
    event_add(ev, &tv);
    w->stop_timer = ev;
}

static double worker_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

#define WORKER_DRAIN_TICK_MS 100

/* SIGQUIT, one tick: by now `elapsed / GRACEFUL_STOP_TIME` of the clients
 * there were should be going, so the reconnects they make elsewhere are
 * spread over the window instead of all landing in one second. A client
 * going away keeps its requests in flight and is closed once they are
 * answered (WebSocket: close 1001). */
static void worker_drain_tick(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    (void)fd;
    (void)what;
    double span = w->cfg->graceful_stop_time, elapsed = worker_now() - w->drain_started;
    int due = span <= 0 || elapsed >= span ? w->drain_total
                                           : (int)((double)w->drain_total * elapsed / span) + 1;
    struct client *c, *next;
    for (c = TAILQ_FIRST(&w->clients); c && w->drain_done < due; c = next) {
        next = TAILQ_NEXT(c, entry);
        if (client_going_away(c))
            w->drain_done++;
    }
    /* Past the window and its grace: what is still waiting for the backend goes. */
    if (w->nclients == 0 || elapsed >= span + WORKER_STOP_GRACE_MS / 1000.0) {
        log_info("worker %d: drained (%d clients closed over %.1f s)", w->id, w->drain_done,
                 elapsed);
        event_del(w->drain_timer);
        worker_stop(w);
    }
}

static void worker_drain_start(struct worker *w)
{
    if (w->draining || w->stopping)
        return;
    w->draining = 1;
    w->drain_total = w->nclients;
    w->drain_started = worker_now();
    evconnlistener_disable(w->listener);
    log_info("worker %d: graceful stop: closing %d clients over %d s", w->id, w->nclients,
             w->cfg->graceful_stop_time);
    w->drain_timer = event_new(w->base, -1, EV_PERSIST, worker_drain_tick, w);
    struct timeval tv = {0, WORKER_DRAIN_TICK_MS * 1000};
    if (w->drain_timer)
        event_add(w->drain_timer, &tv);
    event_active(w->drain_timer, EV_TIMEOUT, 0);
}

/* The master is gone (killed, or crashed): nobody would respawn us or stop
 * us, and a restart could not bind while we hold the port. Stop now. */
static void worker_orphaned(struct worker *w)
{
    log_err("worker %d: the master (pid %d) is gone; stopping", w->id, w->shm->master_pid);
    worker_stop(w);
}

static void worker_signal(evutil_socket_t sig, short what, void *arg)
{
    struct worker *w = arg;
    (void)what;
    if (sig == SIGUSR1) {
        if (log_reopen() < 0) /* said in the old file: the only one we can write */
            log_err("worker %d: LOG_FILE %s: cannot reopen: %s", w->id, w->cfg->log_file,
                    strerror(errno));
        return;
    }
    if (sig == SIGHUP) {
        worker_reload(w);
        return;
    }
    if (sig == SIGQUIT) {
        worker_drain_start(w);
        return;
    }
    if (sig == SIGUSR2) { /* PR_SET_PDEATHSIG, or someone else's USR2 */
        if (getppid() != w->shm->master_pid)
            worker_orphaned(w);
        return;
    }
    worker_stop(w);
}

/* FASTCGI_PARAMS, and the CGI/1.1 params a FastCGI responder expects where
 * FASTCGI_PARAMS does not set them: Go's net/http/fcgi refuses a request
 * without REQUEST_METHOD and a valid SERVER_PROTOCOL. SERVER_PORT, and
 * SERVER_ADDR unless the gateway listens on a wildcard address (then it is
 * per connection, client.c), are the listening socket's. Also decides
 * w->server_addr_per_conn for the clients of this configuration. */
static struct fcgi_params *worker_static_params(struct worker *w, const struct config *cfg)
{
    static const char *const defaults[][2] = {
        {"REQUEST_METHOD", "POST"},
        {"SERVER_PROTOCOL", "HTTP/1.1"},
        {"GATEWAY_INTERFACE", "CGI/1.1"},
        {"SERVER_SOFTWARE", "fooking/" FOOKING_VERSION},
        {"CONTENT_TYPE", "application/octet-stream"}, /* the length protocol's bytes */
    };
    struct fcgi_params *p = fcgi_params_new(NULL, 0);
    for (int i = 0; i < cfg->nparams; i++)
        fcgi_params_add(&p, cfg->fastcgi_params[i].name, cfg->fastcgi_params[i].value,
                        strlen(cfg->fastcgi_params[i].value));
    for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++) {
        const char *name = defaults[i][0];
        if (config_has_param(cfg, name))
            continue;
        /* A WebSocket or script message may be text or binary: no one type. */
        if (strcmp(name, "CONTENT_TYPE") == 0
            && (cfg->protocol != PROTO_LENGTH || cfg->script_file))
            continue;
        fcgi_params_add(&p, name, defaults[i][1], strlen(defaults[i][1]));
    }
    if (!config_has_param(cfg, "SERVER_PORT"))
        fcgi_params_add(&p, "SERVER_PORT", w->server_port, strlen(w->server_port));
    int want_addr = !config_has_param(cfg, "SERVER_ADDR") && w->server_addr[0];
    if (want_addr && !w->server_addr_wild)
        fcgi_params_add(&p, "SERVER_ADDR", w->server_addr, strlen(w->server_addr));
    w->server_addr_per_conn = want_addr && w->server_addr_wild;
    return p;
}

/* SERVER_ADDR / SERVER_PORT for the CGI params, from the listening socket. */
static void worker_server_addr(struct worker *w, int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    snprintf(w->server_port, sizeof(w->server_port), "%d", w->cfg->port);
    w->server_addr_wild = 1;
    int port;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0
        || !netaddr_peer((struct sockaddr *)&ss, w->server_addr, sizeof(w->server_addr), &port,
                         NULL))
        return;
    snprintf(w->server_port, sizeof(w->server_port), "%d", port);
    w->server_addr_wild = ss.ss_family == AF_INET
                              ? ((struct sockaddr_in *)&ss)->sin_addr.s_addr == htonl(INADDR_ANY)
                              : IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *)&ss)->sin6_addr);
}

int worker_run(struct config *cfg, int id, int listen_fd, struct shm_block *shm, void *ssl_ctx)
{
    struct worker w;
    int rc = 1;
    memset(&w, 0, sizeof(w));
    w.hooks = &worker_hooks;
    w.cfg = cfg;
    w.id = id;
    w.shm = shm;
    w.stats = &shm->workers[id].stats;
    w.ssl_ctx = ssl_ctx;
    w.static_fd = -1;
    TAILQ_INIT(&w.clients);
    TAILQ_INIT(&w.asap);
    TAILQ_INIT(&w.closing);
    TAILQ_INIT(&w.closed);
    signal(SIGPIPE, SIG_IGN);

    sid_gen_init(&w.sids, (unsigned)cfg->server_id, (unsigned)id);
    /* A predecessor in this slot may have run its SID clock ahead of real time. */
    w.sids.last_ms = atomic_load(&shm->workers[id].sid_ms);
    w.sids.seq = 63;
    atomic_store(&shm->workers[id].pid, (int)getpid());

    if (cfg->protocol
        == PROTO_WEBSOCKET) /* the crypto library's first SHA-1 costs a few MB of it */
        ws_init();
    if (nbus_is_nats(cfg->bus))
        nbus_global_init(); /* before the loop: libnats' threads touch it */
    w.base = loop_new();
    if (!w.base) {
        log_err("worker %d: cannot create event loop", id);
        return 1;
    }
    if (cfg->idle_time > 0) {
        struct timeval tv = {cfg->idle_time, 0};
        w.idle_tv = event_base_init_common_timeout(w.base, &tv);
    }
    {
        struct timeval tv = {cfg->handshake_timeout, 0};
        w.handshake_tv = event_base_init_common_timeout(w.base, &tv);
    }
    /* Deferred closes and resumes run after the callbacks of this turn. */
    w.asap_ev = event_new(w.base, -1, 0, worker_asap_cb, &w);
    if (!w.asap_ev)
        goto done;
    /* A dead predecessor's connections are gone with it. */
    shm_ip_clear(shm, id);
    w.by_sid = hmap_new(1024);
    w.channels = hmap_new(64);
    w.by_uid = hmap_new(64);
    if (!w.by_sid || !w.channels || !w.by_uid)
        goto done;
    if (cfg->router_host && worker_link_add(&w, uplink_new(&w)) < 0)
        goto done;
    if (cfg->bus
        && worker_link_add(&w, nbus_is_nats(cfg->bus) ? natslink_new(&w) : buslink_new(&w)) < 0)
        goto done;
    worker_server_addr(&w, listen_fd);
    w.pool = backend_pool_new(w.base, cfg, worker_static_params(&w, cfg));
    if (w.pool)
        backend_pool_set_stats(w.pool, &w.stats->backend);
    conn_count_bytes_to(&w.stats->bytes_in, &w.stats->bytes_out);
    if (cfg->static_dir) {
        w.static_fd = open(cfg->static_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (w.static_fd < 0) {
            log_err("worker %d: STATIC_DIR %s: %s", id, cfg->static_dir, strerror(errno));
            goto done;
        }
    }
    if (cfg->script_file) {
        char err[1024];
        w.script = script_load(cfg->script_file, err, sizeof(err));
        if (!w.script) {
            log_err("worker %d: %s", id, err);
            goto done;
        }
    }
    if (!w.pool)
        goto done;
    w.accept_resume = evtimer_new(w.base, worker_accept_resume, &w);
    w.sessions = shm_sessions(shm, id);
    w.orphan_timer = evtimer_new(w.base, worker_orphans_cb, &w);
    w.trim = loop_trim_new(w.base);
    w.shrink = event_new(w.base, -1, EV_PERSIST, worker_shrink_cb, &w);
    if (w.shrink) {
        struct timeval one = {1, 0};
        event_add(w.shrink, &one);
    }
    if (cfg->protocol == PROTO_WEBSOCKET && cfg->ping_interval > 0) {
        struct timeval tv = {cfg->ping_interval, 0};
        w.ping = event_new(w.base, -1, EV_PERSIST, worker_ping_cb, &w);
        if (w.ping)
            event_add(w.ping, &tv);
    }
    worker_adopt_sessions(&w);
    /* Each worker, on the one socket: it may come from an older binary. */
    client_listener_options(listen_fd);
    w.listener =
        evconnlistener_new(w.base, worker_accept_cb, &w, LEV_OPT_CLOSE_ON_EXEC, 0, listen_fd);
    if (!w.listener) {
        log_err("worker %d: cannot listen on inherited socket", id);
        goto done;
    }
    evconnlistener_set_error_cb(w.listener, worker_accept_error);
    atomic_store(&shm->workers[id].ready, 1);
    w.sig_term = evsignal_new(w.base, SIGTERM, worker_signal, &w);
    w.sig_int = evsignal_new(w.base, SIGINT, worker_signal, &w);
    w.sig_hup = evsignal_new(w.base, SIGHUP, worker_signal, &w);
    w.sig_usr1 = evsignal_new(w.base, SIGUSR1, worker_signal, &w);
    w.sig_usr2 = evsignal_new(w.base, SIGUSR2, worker_signal, &w);
    w.sig_quit = evsignal_new(w.base, SIGQUIT, worker_signal, &w);
    event_add(w.sig_term, NULL);
    event_add(w.sig_int, NULL);
    event_add(w.sig_hup, NULL);
    event_add(w.sig_usr1, NULL);
    event_add(w.sig_usr2, NULL);
    event_add(w.sig_quit, NULL);
    /* The kernel tells us when the master dies (SIGUSR2); set after the
     * privileges were dropped, which clears it. A master already gone is
     * seen by the parent check. */
    prctl(PR_SET_PDEATHSIG, SIGUSR2);
    if (getppid() != shm->master_pid)
        worker_orphaned(&w);
    /* The master forked us with its signals blocked; only now that the
     * handlers exist may they arrive (a SIGHUP earlier would have killed us). */
    {
        sigset_t set;
        proc_signal_set(&set);
        sigprocmask(SIG_UNBLOCK, &set, NULL);
    }

    log_info("worker %d started (pid %d)", id, (int)getpid());
    event_base_dispatch(w.base);
    log_info("worker %d exiting", id);
    rc = 0;
done : {
    struct client *c;
    TAILQ_FOREACH(c, &w.clients, entry)
    client_close(c, "gateway stopping");
    client_run_deferred(&w);
}
    if (w.listener)
        evconnlistener_free(w.listener);
    worker_links_free(&w);
    if (w.channels)
        channel_free_all(&w);
    hmap_free(w.by_sid, NULL);
    if (w.by_uid)
        user_free_all(&w);
    worker_reload_drop(&w);
    backend_pool_free(w.pool);
    script_unref(w.script);
    if (w.static_fd >= 0)
        close(w.static_fd);
    if (w.stop_timer)
        event_free(w.stop_timer);
    if (w.accept_resume)
        event_free(w.accept_resume);
    if (w.orphan_timer)
        event_free(w.orphan_timer);
    if (w.trim)
        event_free(w.trim);
    if (w.ping)
        event_free(w.ping);
    if (w.shrink)
        event_free(w.shrink);
    if (w.drain_timer)
        event_free(w.drain_timer);
    free(w.orphans);
    free(w.free_slots);
    for (size_t i = w.owed_done; i < w.nowed; i++)
        request_free(w.owed[i]);
    free(w.owed);
    request_free_list_drop(); /* after the last request_free above */
    if (w.sig_term) {
        event_free(w.sig_term);
        event_free(w.sig_int);
        event_free(w.sig_hup);
        event_free(w.sig_usr1);
        event_free(w.sig_usr2);
        event_free(w.sig_quit);
    }
    /* Run the deferred frees of closed clients once more. */
    event_base_loop(w.base, EVLOOP_NONBLOCK);
    client_run_deferred(&w);
    if (w.asap_ev)
        event_free(w.asap_ev);
    event_base_free(w.base);
    if (w.cfg_owned) {
        config_free(w.cfg);
        free(w.cfg);
    }
    return rc;
}
