/* client.c - client connections of a worker.
 *
 * A client's messages become FastCGI requests in the order they arrive; the
 * replies go back in that same order whatever order the backend finishes them
 * in (c->requests is that order). A client with too many requests in flight is
 * not read from until some are answered, so one client cannot flood the pool.
 * A client holding its share of the backend queue is paused the same way, so
 * one client cannot take the queue from the others.
 *
 * Memory per client is bounded both ways. Input: reads stop at one message of
 * MAX_BUFF_SIZE plus framing (a read watermark), whatever state the client is
 * in. Output: a callback on the output buffer sees every byte queued (replies,
 * pushes, pongs, pings, close frames, script sends); past MAX_OUTPUT_SIZE the
 * client is a slow consumer: no longer read, and closed at the next safe point.
 *
 * client_close() unlinks the client from everything at once but frees the
 * struct on the next loop iteration, so a caller holding a pointer up the
 * stack never touches freed memory (check c->dead after any call that may
 * close). */
#include "client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <time.h>

#include <event2/buffer.h>

#include "conn.h"
#include "frame.h"
#include "log.h"
#include "netaddr.h"
#include "shm.h"
#include "script.h"
#include "tls.h"
#include "user.h"
#include "wctx.h"
#include "ws.h"

#define CLIENT_MAX_PENDING   256
#define CLIENT_FLUSH_SECONDS 5

static void client_readcb(struct conn *conn, void *arg);
static void client_eventcb(struct conn *conn, short what, void *arg);

static void client_output_over(struct conn *conn, void *arg);

void client_limits(struct client *c, const struct config *cfg)
{
    conn_set_read_limit(c->conn, client_input_limit(cfg));
    conn_set_output_limit(c->conn, cfg->max_output_size, client_output_over);
}

size_t client_input_limit(const struct config *cfg)
{
    /* +64: a frame header, and the one byte past the undecoded-input limit of
     * a script that makes it fire (see client_read_script). */
    size_t n = cfg->max_buff_size + 64 + 1;
    return n > WS_MAX_HEAD + 1 ? n : WS_MAX_HEAD + 1;
}

int client_can_take(const struct client *c)
{
    return !c->dead && !c->closing && !c->over_limit && !c->going_away
           && c->pending < CLIENT_MAX_PENDING
           && c->queued < (unsigned)backend_client_share(c->w->pool);
}

static void client_schedule(struct client *c)
{
    if (c->on_asap || c->dead)
        return;
    c->on_asap = 1;
    TAILQ_INSERT_TAIL(&c->w->asap, c, asap_entry);
    event_active(c->w->asap_ev, EV_TIMEOUT, 0);
}

/* Closes c at the next safe point: for callers deep in a write path. */
static void client_close_soon(struct client *c, const char *reason)
{
    if (!c->asap_close)
        c->asap_close = reason;
    client_schedule(c);
}

/* Not read until what made it full has gone (see client_resume). */
static void client_pause_if_full(struct client *c)
{
    if (!c->dead && !c->closing && !c->paused && !client_can_take(c)) {
        c->paused = 1;
        conn_read(c->conn, 0);
    }
}

/* A closing client is never read again: what it sends after a kick, a ping
 * timeout or its script's close is not ours to buffer. */
static void client_resume(struct client *c)
{
    /* Half of the requests in flight answered, not one: no flapping. */
    if (!c->paused || !client_can_take(c) || c->pending >= CLIENT_MAX_PENDING / 2)
        return;
    c->paused = 0;
    conn_read(c->conn, 1);
    /* Bytes already buffered produce no new read event: parse them now. */
    client_readcb(c->conn, c);
}

static void client_unlink(struct client *c);

void client_run_deferred(struct worker *w)
{
    struct client *c;
    while ((c = TAILQ_FIRST(&w->closed)) != NULL) {
        TAILQ_REMOVE(&w->closed, c, asap_entry);
        conn_ext_free(c); /* the client lives in its connection's block */
    }
    /* Closed since the last time: unlinked now, freed at the next turn
     * (what unlinking calls, a script's onClose, may still hold it). */
    while ((c = TAILQ_FIRST(&w->closing)) != NULL) {
        TAILQ_REMOVE(&w->closing, c, asap_entry);
        client_unlink(c);
        TAILQ_INSERT_TAIL(&w->closed, c, asap_entry);
        event_active(w->asap_ev, EV_TIMEOUT, 0);
    }
    while ((c = TAILQ_FIRST(&w->asap)) != NULL) {
        TAILQ_REMOVE(&w->asap, c, asap_entry);
        c->on_asap = 0;
        if (c->asap_close) {
            client_close(c, c->asap_close);
        } else if (c->resume) {
            c->resume = 0;
            client_resume(c);
        }
    }
}

/* Every byte queued for the client passes here, whichever path added it. */
static void client_output_over(struct conn *conn, void *arg)
{
    struct client *c = arg;
    if (c->dead || c->over_limit)
        return;
    size_t pending = conn_output_length(conn);
    log_err("client %s %s:%d: %zu bytes of output pending, over MAX_OUTPUT_SIZE (slow consumer)",
            c->sid, c->addr, c->port, pending);
    c->over_limit = 1;
    counter_add(&c->w->stats->slow_consumers, 1);
    conn_read(c->conn, 0);
    client_close_soon(c, "slow consumer");
}

static void client_hs_timer_free(struct client *c)
{
    if (c->hs_timer) {
        event_free(c->hs_timer);
        c->hs_timer = NULL;
    }
}

/* HANDSHAKE_TIMEOUT for what is not a WebSocket (wsconn.c has its own): the
 * TLS handshake must be done, and a first message begun must be complete. A
 * client that sent nothing at all is not half-open, only quiet (IDLE_TIME). */
static void client_hs_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct client *c = arg;
    (void)fd;
    (void)what;
    client_hs_timer_free(c);
    if (c->dead || c->closing)
        return;
    if (c->w->ssl_ctx && !c->tls_ok) {
        log_info("client %s %s:%d: TLS handshake not completed in %d s", c->sid, c->addr, c->port,
                 c->w->cfg->handshake_timeout);
        client_close(c, "TLS handshake timeout");
    } else if (c->nrequest == 0 && conn_input_length(c->conn) > 0) {
        log_info("client %s %s:%d: first message not completed in %d s", c->sid, c->addr, c->port,
                 c->w->cfg->handshake_timeout);
        client_close(c, "handshake timeout");
    }
}

static void client_close_flush(struct client *c, int code, const char *reason);
static void client_request_done(struct request *r);
static void client_request_queued(struct request *r, int delta);
static const struct request_ops client_request_ops = {client_request_done, client_request_queued};

/* A request of c, not posted yet: a message goes into its body. */
static struct request *client_request(struct client *c, enum request_event ev)
{
    return request_new(c->w->pool, c, &client_request_ops, c->sid, c->params, ev);
}

/* Posts r; its reply is sent in the order of c's requests. */
static void client_post(struct client *c, struct request *r)
{
    if (r->event == EVENT_MESSAGE)
        client_hs_timer_free(c); /* a first message whole: the connection is not half-open */
    TAILQ_INSERT_TAIL(&c->requests, r, owner_entry);
    c->pending++;
    backend_post(c->w->pool, r);
}

void client_message(struct client *c, struct evbuffer *msg, size_t n)
{
    struct request *r = client_request(c, EVENT_MESSAGE);
    counter_add(&c->w->stats->messages_in, 1);
    evbuffer_remove_buffer(msg, r->body, n);
    client_post(c, r);
}

void client_session_start(struct client *c)
{
    c->session_started = 1;
    worker_session_started(c->w, c);
    if (c->w->cfg->event_connect)
        client_post(c, client_request(c, EVENT_CONNECT));
    if (c->script && !c->dead) {
        if (script_on_connect(c->script, c) == SCRIPT_FAILED)
            client_close(c, "script error in onConnect");
        else if (c->script_close)
            client_close_after_flush(c, "closed by script");
    }
}

/* The second half of a close, at a safe point of the loop (client_run_deferred,
 * never inside a callback that walks the worker's lists): c leaves every
 * list and table, its requests, script and protocol state go, the backend
 * gets its close event and the links its CLOSE, the socket is closed. */
static void client_unlink(struct client *c)
{
    if (c->ip_counted)
        shm_ip_add(c->w->shm, c->w->id, c->ip, -1);
    /* Replies nobody will read: requests in flight finish in the pool and are
     * freed there; answered ones are freed now. */
    struct request *r;
    while ((r = TAILQ_FIRST(&c->requests)) != NULL) {
        TAILQ_REMOVE(&c->requests, r, owner_entry);
        if (r->done)
            request_free(r);
        else
            backend_detach(r);
    }
    if (c->script && c->session_started)
        script_on_close(c->script, c);
    script_unref(c->script);
    c->script = NULL;
    if (c->w->cfg->event_close && c->session_started)
        worker_close_event(c->w,
                           request_new(c->w->pool, NULL, NULL, c->sid, c->params, EVENT_CLOSE));
    worker_client_removed(c->w, c);
    user_free(c->w, c);
    fcgi_params_unref(c->params);
    c->params = NULL;
    if (c->proto->free)
        c->proto->free(c);
    conn_free(c->conn); /* the socket; the block stays until the next turn */
    c->conn = NULL;
}

/* Closing is always deferred (as Redis's freeClientAsync): here c is only
 * marked dead, so every walk that meets it skips it and none is cut short;
 * it leaves the lists after the callback that asked returns, and its memory
 * goes a loop turn later still. */
/* The reasons client_close is given, by the kind of close they are; any
 * other (a socket or TLS error, a script error) is an error. */
static const struct {
    const char *reason;
    enum stats_close kind;
} client_close_kinds[] = {
    {"closed by peer", STATS_CLOSE_CLIENT},
    {"closed by peer (close frame)", STATS_CLOSE_CLIENT},
    {"idle timeout", STATS_CLOSE_IDLE},
    {"ping timeout", STATS_CLOSE_IDLE},
    {"handshake timeout", STATS_CLOSE_HANDSHAKE_TIMEOUT},
    {"TLS handshake timeout", STATS_CLOSE_HANDSHAKE_TIMEOUT},
    {"slow consumer", STATS_CLOSE_SLOW_CONSUMER},
    {"output not drained", STATS_CLOSE_SLOW_CONSUMER},
    {"kicked", STATS_CLOSE_KICKED},
    {"closed by the backend", STATS_CLOSE_BACKEND},
    {"closed by script", STATS_CLOSE_SCRIPT},
    {"message too big", STATS_CLOSE_PROTOCOL},
    {"static redirect", STATS_CLOSE_STATIC},
    {"static file served", STATS_CLOSE_STATIC},
    {"static file not sent", STATS_CLOSE_STATIC},
    {"gateway stopping", STATS_CLOSE_STOPPING},
};

static enum stats_close client_close_kind(const struct client *c, const char *reason)
{
    if (c->close_kind)
        return (enum stats_close)(c->close_kind - 1);
    for (size_t i = 0; i < sizeof(client_close_kinds) / sizeof(client_close_kinds[0]); i++)
        if (strcmp(reason, client_close_kinds[i].reason) == 0)
            return client_close_kinds[i].kind;
    return STATS_CLOSE_ERROR;
}

void client_close(struct client *c, const char *reason)
{
    if (c->dead)
        return;
    c->dead = 1;
    counter_add(&c->w->stats->closed[client_close_kind(c, reason)], 1);
    log_info("client %s %s:%d closed: %s", c->sid, c->addr, c->port, reason);
    if (c->on_asap) {
        TAILQ_REMOVE(&c->w->asap, c, asap_entry);
        c->on_asap = 0;
    }
    client_hs_timer_free(c);
    /* Nothing more is read from it, nor written: what is queued is dropped
     * now, as closing the socket would (a slow consumer's backlog above all). */
    conn_read(c->conn, 0);
    conn_discard_output(c->conn);
    TAILQ_INSERT_TAIL(&c->w->closing, c, asap_entry);
    event_active(c->w->asap_ev, EV_TIMEOUT, 0);
}

void client_close_after_flush(struct client *c, const char *reason)
{
    client_close_flush(c, WS_CLOSE_NORMAL, reason);
}

void client_close_code(struct client *c, int code, const char *frame_reason, const char *why)
{
    if (c->dead || c->closing)
        return;
    if (c->proto->close_frame)
        c->proto->close_frame(c, code, frame_reason);
    client_close_flush(c, code, why); /* its close frame is a no-op now */
}

int client_going_away(struct client *c)
{
    if (c->dead || c->closing || c->going_away)
        return 0;
    c->going_away = 1;
    if (!c->paused) { /* no new requests: only those in flight are finished */
        c->paused = 1;
        conn_read(c->conn, 0);
    }
    if (c->pending == 0)
        client_close_flush(c, WS_CLOSE_GOING_AWAY, "gateway stopping");
    return 1;
}

static void client_flushed_cb(struct conn *conn, void *arg)
{
    struct client *c = arg;
    if (conn_output_length(conn) == 0)
        client_close(c, c->close_reason);
}

/* Writes what is pending (a WebSocket gets a close frame with `code`), then closes. */
static void client_close_flush(struct client *c, int code, const char *reason)
{
    if (c->dead || c->closing)
        return;
    if (c->proto->close_frame)
        c->proto->close_frame(c, code, reason);
    if (conn_output_length(c->conn) == 0) {
        client_close(c, reason);
        return;
    }
    c->closing = 1;
    c->close_reason = reason;
    conn_read(c->conn, 0);
    struct timeval tv = {CLIENT_FLUSH_SECONDS, 0};
    conn_set_timeouts(c->conn, NULL, &tv);
    conn_setcb(c->conn, NULL, client_flushed_cb, client_eventcb, c);
}

void client_output_add(struct evbuffer *out, const void *hdr, size_t hlen, struct evbuffer *msg)
{
    size_t n = evbuffer_get_length(msg);
    evbuffer_add(out, hdr, hlen);
    if (hlen + n <= CLIENT_COPY_MAX) {
        /* Small: copied into the output's last block (see CLIENT_COPY_MAX). */
        uint8_t small[CLIENT_COPY_MAX];
        evbuffer_remove(msg, small, n);
        evbuffer_add(out, small, n);
    } else {
        evbuffer_add_buffer(out, msg); /* large: its blocks move, nothing is copied */
    }
}

/* onWrite frames the message; returns 1 when the script handled it (or failed
 * and closed the client), 0 to fall back to the length protocol. */
static int client_send_script(struct client *c, struct evbuffer *msg)
{
    struct evbuffer *framed = evbuffer_new();
    int rc = script_on_write(c->script, c, c->nrequest, msg, framed);
    if (rc == SCRIPT_FAILED) {
        evbuffer_free(framed);
        client_close(c, "script error in onWrite");
        return 1;
    }
    if (rc > 0)
        evbuffer_add_buffer(conn_output(c->conn), framed);
    evbuffer_free(framed);
    if (rc != 0) /* 0: the caller frames msg with the length protocol */
        evbuffer_drain(msg, evbuffer_get_length(msg));
    if (c->script_close)
        client_close_after_flush(c, "closed by script");
    return rc != 0;
}

void client_send(struct client *c, struct evbuffer *msg)
{
    if (c->dead || c->closing || c->over_limit)
        return;
    counter_add(&c->w->stats->messages_out, 1);
    c->proto->send(c, msg);
}

static void client_send_length(struct client *c, struct evbuffer *msg)
{
    struct evbuffer *out = conn_output(c->conn);
    uint8_t hdr[FRAME_HEADER_LEN];
    size_t n = evbuffer_get_length(msg);
    frame_encode(hdr, (uint32_t)n);
    client_output_add(out, hdr, sizeof(hdr), msg);
}

struct shared_msg *shared_msg_new(const void *data, size_t len)
{
    struct shared_msg *m = malloc(sizeof(*m) + len);
    if (!m)
        return NULL;
    m->refs = 1;
    m->len = len;
    m->framed = -1;
    memset(m->hdrlen, 0, sizeof(m->hdrlen));
    if (data)
        memcpy(m->data, data, len);
    return m;
}

void shared_msg_unref(struct shared_msg *m)
{
    if (m && --m->refs == 0)
        free(m);
}

static void shared_msg_cleanup(const void *data, size_t len, void *arg)
{
    (void)data;
    (void)len;
    shared_msg_unref(arg);
}

/* Queues frame[0..len), part of m, on c: copied when small, else a
 * reference to m. */
static void client_push_block(struct client *c, struct shared_msg *m, const uint8_t *frame,
                              size_t len)
{
    struct evbuffer *out = conn_output(c->conn);
    if (len <= CLIENT_COPY_MAX) {
        evbuffer_add(out, frame, len);
    } else {
        m->refs++;
        evbuffer_add_reference(out, frame, len, shared_msg_cleanup, m);
    }
}

void client_send_shared(struct client *c, struct shared_msg *m)
{
    if (c->dead || c->closing || c->over_limit || !c->session_started)
        return;
    int ok = c->proto->shared_header(c, m);
    if (ok < 0) { /* a script frames each copy itself */
        struct evbuffer *b = evbuffer_new();
        evbuffer_add(b, m->data, m->len);
        client_send(c, b);
        evbuffer_free(b);
        return;
    }
    if (ok == 0)
        return;
    counter_add(&c->w->stats->messages_out, 1);
    int proto = c->proto->frame;
    size_t hl = m->hdrlen[proto];
    if (m->framed < 0) {
        memcpy(m->data - hl, m->hdr[proto], hl);
        m->framed = proto;
    }
    if (m->framed == proto) { /* the usual case: the whole frame is one block */
        client_push_block(c, m, m->data - hl, hl + m->len);
    } else { /* clients of two protocols on one message: header apart */
        struct evbuffer *out = conn_output(c->conn);
        evbuffer_add(out, m->hdr[proto], hl);
        m->refs++;
        evbuffer_add_reference(out, m->data, m->len, shared_msg_cleanup, m);
    }
}

/* Frames of a run of pushes back to back in one block, for one protocol. */
static struct shared_msg *client_run_block(struct client *c, struct shared_msg *const *ms, size_t n)
{
    int proto = c->proto->frame;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        c->proto->shared_header(c, ms[i]); /* the header of each, for this protocol */
        total += ms[i]->hdrlen[proto] + ms[i]->len;
    }
    struct shared_msg *b = shared_msg_new(NULL, total);
    if (!b)
        return NULL;
    uint8_t *p = b->data;
    for (size_t i = 0; i < n; i++) {
        memcpy(p, ms[i]->hdr[proto], ms[i]->hdrlen[proto]);
        p += ms[i]->hdrlen[proto];
        memcpy(p, ms[i]->data, ms[i]->len);
        p += ms[i]->len;
    }
    return b;
}

void client_send_shared_run(struct client *c, struct shared_msg *const *ms, size_t n,
                            struct shared_msg *blocks[2])
{
    if (c->dead || c->closing || c->over_limit || !c->session_started)
        return;
    int ok = n > 1 ? c->proto->shared_header(c, ms[0]) : -1;
    if (ok == 0)
        return; /* not taking pushes yet: none of them */
    int proto = c->proto->frame;
    if (ok > 0 && !blocks[proto])
        blocks[proto] = client_run_block(c, ms, n);
    if (ok < 0 || !blocks[proto]) { /* one by one: a script frames each itself */
        for (size_t i = 0; i < n && !c->dead; i++)
            client_send_shared(c, ms[i]);
        return;
    }
    counter_add(&c->w->stats->messages_out, n);
    client_push_block(c, blocks[proto], blocks[proto]->data, blocks[proto]->len);
}

/* The pool moved a request of c into (+1) or out of (-1) its wait queue: a
 * client holding its share of the queue is not read until it drops below. */
static void client_request_queued(struct request *r, int delta)
{
    struct client *c = r->owner;
    c->queued += (unsigned)delta;
    if (delta < 0 && c->paused) {
        c->resume = 1;
        client_schedule(c);
    }
}

/* The pool is done with a request of c: replies go out in request order. */
static void client_request_done(struct request *r)
{
    struct client *c = r->owner;
    if (c->dead)
        return;
    struct request *head;
    while ((head = TAILQ_FIRST(&c->requests)) != NULL && head->done) {
        TAILQ_REMOVE(&c->requests, head, owner_entry);
        c->pending--;
        if (head->failed)
            ; /* nothing to deliver, no command to apply */
        else if (head->cmds != NULL || head->cmds_lost)
            worker_reply(c->w, c, head); /* reply commands (reply.c) */
        else if (evbuffer_get_length(head->reply) > 0 || head->explicit_empty)
            client_send(c, head->reply);
        request_free(head);
        if (c->dead)
            return;
    }
    if (c->going_away && c->pending == 0) {
        client_close_flush(c, WS_CLOSE_GOING_AWAY, "gateway stopping");
        return;
    }
    if (c->paused) { /* resumed after the pool's callback has returned */
        c->resume = 1;
        client_schedule(c);
    }
}

/* Length protocol: one message off the input. 1 = a message was taken,
 * 0 = more bytes needed, -1 = the client was closed. */
static int client_read_frame(struct client *c, struct evbuffer *in)
{
    uint8_t hdr[FRAME_HEADER_LEN];
    uint32_t n;
    if (evbuffer_copyout(in, hdr, sizeof(hdr)) < (ev_ssize_t)sizeof(hdr))
        return 0;
    if (frame_decode(hdr, sizeof(hdr), c->w->cfg->max_buff_size, &n) == FRAME_TOO_BIG) {
        log_err("client %s %s:%d: message of %u bytes over MAX_BUFF_SIZE (%zu)", c->sid, c->addr,
                c->port, n, c->w->cfg->max_buff_size);
        client_close(c, "message too big");
        return -1;
    }
    if (evbuffer_get_length(in) < FRAME_HEADER_LEN + (size_t)n)
        return 0;
    evbuffer_drain(in, FRAME_HEADER_LEN);
    c->nrequest++;
    client_message(c, in, n);
    return 1;
}

/* A Lua protocol script decodes the input (onRead); 0 from it means "this one
 * is a length-prefixed message". One message per call, like the original. */
static void client_read_script(struct client *c, struct evbuffer *in)
{
    struct script *s = c->script;
    int waiting = 0; /* the script (or a length frame) asked for more input */
    while (client_can_take(c) && evbuffer_get_length(in) > 0) {
        size_t before = evbuffer_get_length(in);
        /* A fresh buffer each call, not the body of a recycled request: the
         * script module refuses a buffer kept from an earlier call by its
         * address, and a recycled one comes back with the same address. */
        struct evbuffer *msg = evbuffer_new();
        int rc = script_on_read(s, c, c->nrequest, in, msg);
        if (rc == SCRIPT_FAILED || c->script_close || rc < 0) {
            evbuffer_free(msg);
            waiting = rc < 0;
            if (rc == SCRIPT_FAILED)
                client_close(c, "script error in onRead");
            else if (c->script_close)
                client_close_after_flush(c, "closed by script");
            break;
        }
        if (rc == 0) {
            evbuffer_free(msg);
            int got = client_read_frame(c, in);
            if (got <= 0) {
                waiting = got == 0;
                break;
            }
            continue;
        }
        c->nrequest++;
        size_t n = evbuffer_get_length(msg);
        if (n > c->w->cfg->max_buff_size) {
            log_err("client %s %s:%d: script produced a message of %zu bytes, over MAX_BUFF_SIZE",
                    c->sid, c->addr, c->port, n);
            evbuffer_free(msg);
            client_close(c, "message too big");
            return;
        }
        if (n > 0)
            client_message(c, msg, n);
        evbuffer_free(msg);
        if (evbuffer_get_length(in) == before && n == 0) {
            waiting = 1; /* handled but consumed nothing: wait for more input */
            break;
        }
    }
    /* Undecoded input is bounded too: a script waiting for more never waits
     * forever. (Input held back while the client is paused does not count.) */
    if (!c->dead && waiting && evbuffer_get_length(in) > c->w->cfg->max_buff_size + 64) {
        log_err("client %s %s:%d: %zu bytes of undecoded input, over MAX_BUFF_SIZE", c->sid,
                c->addr, c->port, evbuffer_get_length(in));
        client_close(c, "message too big");
    }
}

static void client_readcb(struct conn *conn, void *arg)
{
    struct client *c = arg;
    (void)conn;
    if (c->dead || c->closing || c->over_limit)
        return;
    c->proto->read(c, conn_input(c->conn));
    client_pause_if_full(c);
}

static void client_eventcb(struct conn *conn, short what, void *arg)
{
    struct client *c = arg;
    (void)conn;
    char tls_err[128];
    if (what & CONN_CONNECTED) { /* the TLS handshake completed */
        c->tls_ok = 1;
        if (c->hs_timer && !c->proto->start && c->nrequest > 0)
            client_hs_timer_free(c);
        return;
    }
    if (what & CONN_TIMEOUT)
        client_close(c, c->closing ? "output not drained" : "idle timeout");
    else if (what & CONN_EOF)
        client_close(c, "closed by peer");
    else if (c->w->ssl_ctx && conn_tls_error(c->conn, tls_err, sizeof(tls_err)))
        client_close(c, tls_err); /* logged at once: a stack buffer is enough */
    else
        client_close(c, evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

/* Fills the printable address and the 16-byte key; 0 if the peer has no IP. */
static int client_peer(struct client *c, struct sockaddr *sa)
{
    return netaddr_peer(sa, c->addr, sizeof(c->addr), &c->port, c->ip);
}

/* SERVER_ADDR, the address the client reached, when the gateway listens on a
 * wildcard (HOST = 0.0.0.0): a getsockname per connection. Otherwise it is
 * among the worker's static params, with SERVER_PORT. */
static void client_server_addr(struct client *c, evutil_socket_t fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char buf[48];
    int port;
    if (!c->w->server_addr_per_conn || getsockname(fd, (struct sockaddr *)&ss, &len) != 0
        || !netaddr_peer((struct sockaddr *)&ss, buf, sizeof(buf), &port, NULL))
        return;
    fcgi_params_add(&c->params, "SERVER_ADDR", buf, strlen(buf));
}

/* MAX_CONN_PER_IP over the whole gateway. Counted first, then checked, so two
 * workers accepting from one address at once both refuse rather than both
 * letting one too many in. Returns 0 to accept. */
static int client_ip_admit(struct client *c)
{
    struct worker *w = c->w;
    int limit = w->cfg->max_conn_per_ip;
    if (limit <= 0)
        return 0;
    if (shm_ip_add(w->shm, w->id, c->ip, +1) < 0)
        return 0; /* table full: more distinct addresses than it holds; not counted */
    c->ip_counted = 1;
    unsigned n = shm_ip_total(w->shm, c->ip);
    if (n <= (unsigned)limit)
        return 0;
    shm_ip_add(w->shm, w->id, c->ip, -1);
    c->ip_counted = 0;
    return -1;
}

/* NAT boxes forget idle mappings; keepalive probes find clients that went
 * away without a word: first after 60 s of silence, then every 10 s, six tries.
 * Set on the listening socket, whose accepted sockets inherit them (Linux
 * copies these options, TCP_NODELAY included, into every connection it
 * accepts): five system calls less per connection. */
void client_listener_options(evutil_socket_t fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0
        || (ss.ss_family != AF_INET && ss.ss_family != AF_INET6))
        return;
    int one = 1, idle = 60, intvl = 10, cnt = 6;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

void client_accept(struct worker *w, evutil_socket_t fd, struct sockaddr *sa, int salen,
                   const struct client_proto *proto)
{
    (void)salen;
    const struct config *cfg = w->cfg;
    if (cfg->max_client_num > 0) {
        int before = atomic_fetch_add(&w->shm->clients, 1);
        if (before >= cfg->max_client_num) {
            atomic_fetch_sub(&w->shm->clients, 1);
            counter_add(&w->stats->refused_max_clients, 1);
            log_err("client refused: MAX_CLIENT_NUM (%d) reached", cfg->max_client_num);
            evutil_closesocket(fd);
            return;
        }
    } else {
        atomic_fetch_add(&w->shm->clients, 1);
    }
    if (w->script) /* a script replaces PROTOCOL */
        proto = &client_proto_script;
    /* One block: the connection, the client, the protocol's state. */
    struct conn *conn =
        conn_new_ext(w->base, fd, w->ssl_ctx, sizeof(struct client) + proto->state_size);
    if (conn == NULL) {
        atomic_fetch_sub(&w->shm->clients, 1);
        evutil_closesocket(fd);
        return;
    }
    struct client *c = conn_ext(conn);
    c->conn = conn;
    c->proto = proto;
    c->w = w;
    c->shm_slot = -1;
    TAILQ_INIT(&c->requests);
    LIST_INIT(&c->chans);
    int inet = client_peer(c, sa);
    if (inet && client_ip_admit(c) < 0) {
        if (w->ip_refused_logged != time(NULL)) { /* at most a line a second per worker */
            w->ip_refused_logged = time(NULL);
            log_err("client refused: %s has MAX_CONN_PER_IP (%d) connections", c->addr,
                    cfg->max_conn_per_ip);
        }
        counter_add(&w->stats->refused_max_per_ip, 1);
        atomic_fetch_sub(&w->shm->clients, 1);
        conn_ext_free(c); /* closes fd */
        return;
    }
    counter_add(&w->stats->accepted, 1);
    conn_count_bytes(conn);
    c->script = script_ref(w->script);
    sid_next(&w->sids, sid_now_ms(), c->sid);
    c->sid[SID_LEN] = '\0';
    atomic_store(&w->shm->workers[w->id].sid_ms, w->sids.last_ms);

    char name[96], port[16];
    snprintf(name, sizeof(name), "%sSESSIONID", cfg->fastcgi_prefix);
    c->params = fcgi_params_new(NULL, 256);
    fcgi_params_add(&c->params, name, c->sid, SID_LEN);
    fcgi_params_add(&c->params, "REMOTE_ADDR", c->addr, strlen(c->addr));
    snprintf(port, sizeof(port), "%d", c->port);
    fcgi_params_add(&c->params, "REMOTE_PORT", port, strlen(port));
    client_server_addr(c, fd);
    if (!c->proto->start) /* a WebSocket adds its handshake's first */
        fcgi_params_fit(&c->params);

    conn_setcb(c->conn, client_readcb, NULL, client_eventcb, c);
    if (w->idle_tv)
        conn_set_timeouts(c->conn, w->idle_tv, NULL);
    client_limits(c, cfg);
    worker_client_added(w, c);
    log_debug("client %s %s:%d connected", c->sid, c->addr, c->port);
    /* A WebSocket session starts after its handshake. */
    if (c->proto->start) {
        if (c->proto->start(c) < 0) {
            client_close(c, "out of memory");
            return;
        }
    } else {
        c->hs_timer = evtimer_new(w->base, client_hs_timeout, c);
        if (c->hs_timer)
            evtimer_add(c->hs_timer, w->handshake_tv);
        client_session_start(c);
    }
    if (!c->dead && !c->closing)
        conn_read(c->conn, 1);
}

/* ---- the length protocol, and a Lua protocol script ---- */

static void client_read_length(struct client *c, struct evbuffer *in)
{
    while (client_can_take(c) && client_read_frame(c, in) > 0)
        ;
}

static int client_shared_length(struct client *c, struct shared_msg *m)
{
    (void)c;
    if (m->hdrlen[PROTO_LENGTH] == 0) {
        frame_encode(m->hdr[PROTO_LENGTH], (uint32_t)m->len);
        m->hdrlen[PROTO_LENGTH] = FRAME_HEADER_LEN;
    }
    return 1;
}

/* A script without onRead (or onWrite) leaves that direction to length frames. */
static void client_read_scripted(struct client *c, struct evbuffer *in)
{
    if (script_has_read(c->script))
        client_read_script(c, in);
    else
        client_read_length(c, in);
}

static void client_send_scripted(struct client *c, struct evbuffer *msg)
{
    if (!script_has_write(c->script) || !client_send_script(c, msg))
        client_send_length(c, msg);
}

static int client_shared_scripted(struct client *c, struct shared_msg *m)
{
    return script_has_write(c->script) ? -1 : client_shared_length(c, m);
}

const struct client_proto client_proto_length = {
    .frame = PROTO_LENGTH,
    .kind = STATS_PROTO_LENGTH,
    .read = client_read_length,
    .send = client_send_length,
    .shared_header = client_shared_length,
};

const struct client_proto client_proto_script = {
    .frame = PROTO_LENGTH,
    .kind = STATS_PROTO_SCRIPT,
    .read = client_read_scripted,
    .send = client_send_scripted,
    .shared_header = client_shared_scripted,
};
