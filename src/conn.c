/* conn.c - stream sockets for clients and backends (see conn.h).
 *
 * Plain sockets: two raw persistent events on the fd (read; write, armed only
 * while output waits for room) and two evbuffers. An evbuffer callback on the
 * output notices every addition and puts the connection on its loop's pending
 * list; the list's event is made active at the first addition of a turn, so
 * libevent runs it after the callbacks already due in that turn: every
 * connection that got output is written once, with everything it got.
 *
 * TLS sockets keep bufferevent_openssl (the record layer is its job); this
 * file only maps its callbacks and settings. */
#include "conn.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/event_struct.h>

#include "tls.h"

/* First read of a burst; doubled while reads fill what was offered, up to
 * CONN_READ_MAX, back to this after a short read. Sized so a chain (with
 * libevent's header) stays one malloc size class. */
#define CONN_READ_MIN (4096 - 128)
#define CONN_READ_MAX (65536 - 128)

struct conn_loop {
    struct event_base *base;
    struct event flush_ev;
    TAILQ_HEAD(, conn) pending;
    int refs; /* connections on this base, plus a running flush */
    struct conn_loop *next;
};

struct conn {
    struct conn_loop *loop;
    struct bufferevent *bev; /* TLS */
    struct evbuffer *in, *out;
    struct event rev;
    struct event *wev; /* made at the first short write (most sockets never have one) */
    struct evbuffer_cb_entry *in_cbe; /* while reading is suspended at the limit */
    conn_data_cb read_cb, drained_cb, over_cb;
    conn_event_cb event_cb;
    void *arg;
    struct timeval rd_tv, wr_tv;
    /* Limits, clamped to 4 GiB - 1 (no limit: 0): four bytes each keep an
     * idle client's connection and state in one 576-byte heap chunk. */
    uint32_t limit, read_size, out_max;
    unsigned on_pending : 1, reading : 1, suspended : 1, writing : 1, connecting : 1, has_rd : 1,
        has_wr : 1, freed : 1, shrink_soon : 1, counted : 1;
    /* With an owner's area (conn_new_ext) the memory has two holders: the
     * conn (until conn_free and its callbacks are over) and the owner (until
     * conn_ext_free); the last one out frees it. */
    unsigned holds : 2;
    TAILQ_ENTRY(conn) pending_entry;
    evutil_socket_t fd;
    int in_cb; /* callbacks running: conn_free waits for them */
};

/* Where an owner's area starts: after the conn, aligned for any type. */
#define CONN_EXT_OFFSET                                                                            \
    ((sizeof(struct conn) + _Alignof(max_align_t) - 1) / _Alignof(max_align_t)                     \
     * _Alignof(max_align_t))

static struct conn_loop *loops;

/* Where counted connections add their bytes (conn_count_bytes_to). */
static counter_t conn_nobytes[2];
static counter_t *conn_bytes_in = &conn_nobytes[0], *conn_bytes_out = &conn_nobytes[1];

static int conn_retriable(int e)
{
    return e == EAGAIN || e == EWOULDBLOCK || e == EINTR;
}

static void conn_flush_cb(evutil_socket_t fd, short what, void *arg);

static struct conn_loop *conn_loop_ref(struct event_base *base)
{
    struct conn_loop *l;
    for (l = loops; l; l = l->next)
        if (l->base == base) {
            l->refs++;
            return l;
        }
    l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->base = base;
    l->refs = 1;
    TAILQ_INIT(&l->pending);
    event_assign(&l->flush_ev, base, -1, 0, conn_flush_cb, l);
    l->next = loops;
    loops = l;
    return l;
}

/* A loop's state goes with its last connection, so a base freed and another
 * made at the same address never finds stale state. */
static void conn_loop_unref(struct conn_loop *l)
{
    if (--l->refs > 0)
        return;
    event_del(&l->flush_ev);
    struct conn_loop **pp = &loops;
    while (*pp != l)
        pp = &(*pp)->next;
    *pp = l->next;
    free(l);
}

/* The buffers of a plain conn (a TLS conn's belong to its bufferevent). */
static void conn_free_buffers(struct conn *c)
{
    if (c->in)
        evbuffer_free(c->in);
    if (c->out)
        evbuffer_free(c->out);
    c->in = c->out = NULL;
}

static void conn_destroy(struct conn *c)
{
    if (c->holds > 1) { /* the owner's area is still in use */
        c->holds--;
        return;
    }
    struct conn_loop *l = c->loop;
    free(c);
    conn_loop_unref(l);
}

/* After a callback into the owner: the owner may have freed c meanwhile. */
static int conn_leave(struct conn *c)
{
    if (--c->in_cb == 0 && c->freed) {
        conn_free_buffers(c);
        conn_destroy(c);
        return 0;
    }
    return !c->freed;
}

static void conn_event(struct conn *c, short what)
{
    if (c->event_cb)
        c->event_cb(c, what, c->arg);
}

/* ---- plain sockets ---- */

static void conn_unpend(struct conn *c)
{
    if (c->on_pending) {
        TAILQ_REMOVE(&c->loop->pending, c, pending_entry);
        c->on_pending = 0;
    }
}

static void conn_writable(evutil_socket_t fd, short what, void *arg);

static int conn_arm_write(struct conn *c)
{
    if (c->writing)
        return 0;
    /* Persistent: while the peer reads slower than we write, every write is
     * short, and a one-shot event re-added after each would cost an epoll_ctl
     * per write. */
    if (!c->wev
        && !(c->wev = event_new(c->loop->base, c->fd, EV_WRITE | EV_PERSIST, conn_writable, c))) {
        errno = ENOMEM;
        return -1;
    }
    c->writing = 1;
    event_add(c->wev, c->has_wr ? &c->wr_tv : NULL);
    return 0;
}

static void conn_disarm_write(struct conn *c)
{
    if (c->writing) {
        c->writing = 0;
        event_del(c->wev);
    }
}

/* The buffers exist while data waits (conn_shrink frees them when empty). */
static struct evbuffer *conn_in_buf(struct conn *c)
{
    if (!c->in && !(c->in = evbuffer_new()))
        abort(); /* out of memory with bytes already on the socket */
    return c->in;
}

static void conn_out_cb(struct evbuffer *b, const struct evbuffer_cb_info *info, void *arg);

static struct evbuffer *conn_out_buf(struct conn *c)
{
    if (!c->out) {
        if (!(c->out = evbuffer_new()) || !evbuffer_add_cb(c->out, conn_out_cb, c))
            abort();
    }
    return c->out;
}

/* Writes what the socket takes; the rest waits for EV_WRITE. Called with
 * in_cb held. */
static void conn_write(struct conn *c)
{
    size_t len = c->out ? evbuffer_get_length(c->out) : 0;
    if (len > 0) {
        /* One writev, of at most libevent's 128 chains. Whatever is left
         * waits for EV_WRITE: the socket was full, or (rarely) there were
         * more chains, and then EV_WRITE fires at the next poll. */
        int n = evbuffer_write(c->out, c->fd);
        if (n > 0 && c->counted)
            counter_add(conn_bytes_out, (uint64_t)n);
        if (n < 0) {
            int e = EVUTIL_SOCKET_ERROR();
            if (conn_retriable(e) && conn_arm_write(c) == 0)
                return;
            e = conn_retriable(e) ? ENOMEM : e;
            conn_disarm_write(c);
            errno = e;
            conn_event(c, CONN_WRITING | CONN_ERROR);
            return;
        }
        if ((size_t)n < len) {
            if (conn_arm_write(c) == 0)
                return;
            conn_event(c, CONN_WRITING | CONN_ERROR);
            return;
        }
    }
    conn_disarm_write(c);
    if (c->drained_cb)
        c->drained_cb(c, c->arg);
    if (c->shrink_soon && !c->freed) {
        c->shrink_soon = 0;
        conn_shrink(c);
    }
}

static void conn_flush_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn_loop *l = arg;
    struct conn *c;
    (void)fd;
    (void)what;
    l->refs++; /* the owners' callbacks may free every connection */
    while ((c = TAILQ_FIRST(&l->pending)) != NULL) {
        conn_unpend(c);
        c->in_cb++;
        conn_write(c);
        conn_leave(c);
    }
    conn_loop_unref(l);
}

/* Output to write at the end of this turn (unless c already waits for
 * EV_WRITE, which writes it). Called on every addition to the output. */
static void conn_pend(struct conn *c)
{
    if (c->on_pending || c->writing || c->connecting || c->freed)
        return;
    struct conn_loop *l = c->loop;
    if (TAILQ_EMPTY(&l->pending))
        event_active(&l->flush_ev, EV_TIMEOUT, 0);
    TAILQ_INSERT_TAIL(&l->pending, c, pending_entry);
    c->on_pending = 1;
}

static void conn_out_cb(struct evbuffer *b, const struct evbuffer_cb_info *info, void *arg)
{
    struct conn *c = arg;
    (void)b;
    if (info->n_added == 0) {
        /* TLS: what the bufferevent took from here went to the peer (a plain
         * conn counts in conn_write, past the discards). */
        if (c->bev && c->counted && info->n_deleted)
            counter_add(conn_bytes_out, info->n_deleted);
        return;
    }
    if (!c->bev)
        conn_pend(c);
    /* The new length from the callback's own figures: this runs for every
     * push to every recipient, so no call and no pointer chase. */
    if (c->out_max && info->orig_size + info->n_added - info->n_deleted > c->out_max && c->over_cb
        && !c->freed)
        c->over_cb(c, c->arg);
}

static void conn_rev_update(struct conn *c)
{
    if (c->fd < 0) /* not connected yet: its events are not set up */
        return;
    if (c->reading && !c->suspended && !c->connecting)
        event_add(&c->rev, c->has_rd ? &c->rd_tv : NULL);
    else
        event_del(&c->rev);
}

static void conn_unsuspend(struct conn *c)
{
    c->suspended = 0;
    evbuffer_remove_cb_entry(c->in, c->in_cbe);
    c->in_cbe = NULL;
    conn_rev_update(c);
}

static void conn_resume_below_limit(struct conn *c)
{
    if (c->suspended && evbuffer_get_length(c->in) < c->limit)
        conn_unsuspend(c);
}

/* Input consumed below the limit: reading goes on. */
static void conn_in_cb(struct evbuffer *b, const struct evbuffer_cb_info *info, void *arg)
{
    (void)b;
    (void)info;
    conn_resume_below_limit(arg);
}

/* The input holds the limit: not read until the owner consumes some. */
static void conn_suspend(struct conn *c)
{
    if (c->suspended)
        return;
    c->in_cbe = evbuffer_add_cb(c->in, conn_in_cb, c);
    if (!c->in_cbe)
        abort();
    c->suspended = 1;
    conn_rev_update(c);
}

static void conn_readable(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    c->in_cb++;
    if (what & EV_TIMEOUT) {
        conn_event(c, CONN_READING | CONN_TIMEOUT);
        conn_leave(c);
        return;
    }
    size_t want = c->read_size, have = evbuffer_get_length(conn_in_buf(c));
    if (c->limit) {
        if (have >= c->limit) {
            conn_suspend(c);
            conn_leave(c);
            return;
        }
        if (c->limit - have < want)
            want = c->limit - have;
    }
    struct evbuffer_iovec v[2];
    int nv = evbuffer_reserve_space(c->in, (ev_ssize_t)want, v, 2);
    ssize_t n;
    if (nv <= 0) {
        errno = ENOMEM;
        n = -1;
    } else if (nv == 1 || v[0].iov_len >= want) {
        n = recv(fd, v[0].iov_base, want < v[0].iov_len ? want : v[0].iov_len, 0);
        nv = 1;
    } else {
        v[1].iov_len = want - v[0].iov_len < v[1].iov_len ? want - v[0].iov_len : v[1].iov_len;
        n = readv(fd, (struct iovec *)v, 2);
    }
    if (n <= 0) {
        int e = errno;
        if (nv > 0)
            evbuffer_commit_space(c->in, v, 0);
        if (n < 0 && conn_retriable(e)) {
            conn_leave(c);
            return;
        }
        event_del(&c->rev);
        c->reading = 0;
        errno = e;
        conn_event(c, CONN_READING | (n == 0 ? CONN_EOF : CONN_ERROR));
        conn_leave(c);
        return;
    }
    size_t got = (size_t)n, left = got;
    for (int i = 0; i < nv; i++) {
        if (v[i].iov_len > left)
            v[i].iov_len = left;
        left -= v[i].iov_len;
    }
    evbuffer_commit_space(c->in, v, nv);
    if (c->counted)
        counter_add(conn_bytes_in, got);
    if (got == want && c->read_size < CONN_READ_MAX)
        c->read_size = c->read_size * 2 + 128;
    else if (got < want / 2)
        c->read_size = CONN_READ_MIN;
    if (c->read_cb)
        c->read_cb(c, c->arg);
    conn_leave(c);
}

static void conn_writable(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    (void)fd;
    c->in_cb++;
    if (what & EV_TIMEOUT) {
        conn_disarm_write(c);
        conn_event(c, CONN_WRITING | CONN_TIMEOUT);
    } else if (c->connecting) {
        int err = 0;
        socklen_t elen = sizeof(err);
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
            err = errno;
        if (err == EINPROGRESS || err == EINTR) {
            /* still armed */
        } else if (err) {
            conn_disarm_write(c);
            errno = err;
            conn_event(c, CONN_WRITING | CONN_ERROR);
        } else {
            conn_disarm_write(c);
            c->connecting = 0;
            conn_rev_update(c);
            conn_event(c, CONN_CONNECTED);
            if (!c->freed && c->out && evbuffer_get_length(c->out) > 0)
                conn_pend(c); /* what was queued while connecting */
        }
    } else {
        conn_write(c); /* disarms once the output is all written */
    }
    conn_leave(c);
}

/* ---- TLS ---- */

static void conn_bev_read(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    (void)bev;
    c->in_cb++;
    if (c->read_cb)
        c->read_cb(c, c->arg);
    conn_leave(c);
}

static void conn_bev_write(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    (void)bev;
    c->in_cb++;
    if (c->drained_cb && evbuffer_get_length(c->out) == 0)
        c->drained_cb(c, c->arg);
    conn_leave(c);
}

/* TLS: the bytes the bufferevent decrypted into the input. */
static void conn_tls_in_cb(struct evbuffer *b, const struct evbuffer_cb_info *info, void *arg)
{
    (void)b;
    (void)arg;
    if (info->n_added)
        counter_add(conn_bytes_in, info->n_added);
}

void conn_count_bytes(struct conn *c)
{
    c->counted = 1;
    if (c->bev && !evbuffer_add_cb(c->in, conn_tls_in_cb, c))
        c->counted = 0; /* out of memory: not counted, both ways alike */
}

void conn_count_bytes_to(counter_t *in, counter_t *out)
{
    conn_bytes_in = in;
    conn_bytes_out = out;
}

static void conn_bev_event(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    (void)bev;
    c->in_cb++;
    conn_event(c, what);
    conn_leave(c);
}

int conn_tls_error(struct conn *c, char *out, size_t len)
{
    return c->bev ? tls_error_string(c->bev, out, len) : 0;
}

/* ---- both ---- */

struct conn *conn_new(struct event_base *base, evutil_socket_t fd, void *tls_ctx)
{
    return conn_new_ext(base, fd, tls_ctx, 0);
}

struct conn *conn_new_ext(struct event_base *base, evutil_socket_t fd, void *tls_ctx, size_t ext)
{
    struct conn *c = calloc(1, ext ? CONN_EXT_OFFSET + ext : sizeof(*c));
    if (!c)
        return NULL;
    c->holds = ext ? 2 : 1;
    c->fd = fd;
    c->read_size = CONN_READ_MIN;
    if ((c->loop = conn_loop_ref(base)) == NULL) {
        free(c);
        return NULL;
    }
    if (tls_ctx) {
        if ((c->bev = tls_bufferevent_new(base, tls_ctx, fd)) == NULL) {
            c->holds = 1; /* nobody got the block: it goes now */
            conn_destroy(c);
            return NULL;
        }
        bufferevent_setcb(c->bev, conn_bev_read, conn_bev_write, conn_bev_event, c);
        bufferevent_enable(c->bev, EV_WRITE);
        c->in = bufferevent_get_input(c->bev);
        c->out = bufferevent_get_output(c->bev);
        if (!evbuffer_add_cb(c->out, conn_out_cb, c)) {
            bufferevent_free(c->bev);
            c->holds = 1;
            conn_destroy(c);
            return NULL;
        }
        return c;
    }
    if (fd >= 0)
        event_assign(&c->rev, base, fd, EV_READ | EV_PERSIST, conn_readable, c);
    return c;
}

int conn_connect(struct conn *c, const struct sockaddr *sa, socklen_t len)
{
    evutil_socket_t fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    /* Every message leaves when it is written (one write per loop turn
     * already gathers what a turn produced): with Nagle's algorithm a small
     * one waits for the peer to acknowledge the one before, up to its
     * delayed-ACK time, and a session's CONN could reach the router after
     * the backend's push to it. */
    if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    if (connect(fd, sa, len) < 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    struct event_base *base = c->loop->base;
    c->fd = fd;
    c->connecting = 1;
    event_assign(&c->rev, base, fd, EV_READ | EV_PERSIST, conn_readable, c);
    if (conn_arm_write(c) < 0) { /* connected (or refused) when writable */
        c->fd = -1;
        close(fd);
        errno = ENOMEM;
        return -1;
    }
    return 0;
}

void conn_setcb(struct conn *c, conn_data_cb read, conn_data_cb drained, conn_event_cb event,
                void *arg)
{
    c->read_cb = read;
    c->drained_cb = drained;
    c->event_cb = event;
    c->arg = arg;
}

struct evbuffer *conn_input(struct conn *c)
{
    return conn_in_buf(c);
}

struct evbuffer *conn_output(struct conn *c)
{
    return conn_out_buf(c);
}

size_t conn_input_length(const struct conn *c)
{
    return c->in ? evbuffer_get_length(c->in) : 0;
}

size_t conn_output_length(const struct conn *c)
{
    return c->out ? evbuffer_get_length(c->out) : 0;
}

void conn_set_output_limit(struct conn *c, size_t max, conn_data_cb over)
{
    c->out_max = max > UINT32_MAX ? UINT32_MAX : (uint32_t)max;
    c->over_cb = over;
}

void conn_shrink(struct conn *c)
{
    if (c->bev || c->freed)
        return;
    if (c->in && !c->suspended && evbuffer_get_length(c->in) == 0) {
        evbuffer_free(c->in);
        c->in = NULL;
    }
    if (c->out && !c->on_pending && !c->writing && evbuffer_get_length(c->out) == 0) {
        evbuffer_free(c->out);
        c->out = NULL;
    }
}

void conn_discard_output(struct conn *c)
{
    if (c->freed)
        return;
    if (c->bev) {
        struct evbuffer *out = bufferevent_get_output(c->bev);
        c->counted = 0; /* dropped, not sent */
        evbuffer_drain(out, evbuffer_get_length(out));
        return;
    }
    conn_unpend(c);
    conn_disarm_write(c);
    if (c->out)
        evbuffer_drain(c->out, evbuffer_get_length(c->out));
}

void conn_shrink_after_flush(struct conn *c)
{
    if (c->bev || c->freed)
        return;
    if (c->on_pending || c->writing)
        c->shrink_soon = 1;
    else
        conn_shrink(c);
}

evutil_socket_t conn_fd(const struct conn *c)
{
    return c->bev ? bufferevent_getfd(c->bev) : c->fd;
}

void conn_read(struct conn *c, int on)
{
    if (c->bev) {
        if (on)
            bufferevent_enable(c->bev, EV_READ);
        else
            bufferevent_disable(c->bev, EV_READ);
        return;
    }
    if ((int)c->reading == !!on)
        return;
    c->reading = !!on;
    if (on && c->limit && conn_input_length(c) >= c->limit)
        conn_suspend(c);
    conn_rev_update(c);
}

void conn_set_timeouts(struct conn *c, const struct timeval *rd, const struct timeval *wr)
{
    if (c->bev) {
        bufferevent_set_timeouts(c->bev, rd, wr);
        return;
    }
    c->has_rd = rd != NULL;
    c->has_wr = wr != NULL;
    if (rd)
        c->rd_tv = *rd;
    if (wr)
        c->wr_tv = *wr;
    if (c->fd < 0)
        return;
    if (event_pending(&c->rev, EV_READ, NULL))
        conn_rev_update(c);
    if (c->writing) {
        if (wr)
            event_add(c->wev, &c->wr_tv);
        else
            event_remove_timer(c->wev);
    }
    if (!rd && event_pending(&c->rev, EV_READ, NULL))
        event_remove_timer(&c->rev);
}

void conn_set_read_limit(struct conn *c, size_t max)
{
    if (c->bev) {
        bufferevent_setwatermark(c->bev, EV_READ, 0, max);
        return;
    }
    c->limit = max > UINT32_MAX ? UINT32_MAX : (uint32_t)max;
    if (c->suspended && (max == 0 || evbuffer_get_length(c->in) < max))
        conn_unsuspend(c);
}

void *conn_ext(struct conn *c)
{
    return (char *)c + CONN_EXT_OFFSET;
}

void conn_ext_free(void *ext)
{
    struct conn *c = (struct conn *)((char *)ext - CONN_EXT_OFFSET);
    conn_free(c); /* when the owner has not */
    conn_destroy(c);
}

void conn_free(struct conn *c)
{
    if (c == NULL || c->freed)
        return;
    c->freed = 1;
    if (c->bev) {
        bufferevent_free(c->bev);
        c->in = c->out = NULL;
    } else {
        conn_unpend(c);
        if (c->fd >= 0) {
            event_del(&c->rev);
            evutil_closesocket(c->fd);
            c->fd = -1;
        }
        if (c->wev)
            event_free(c->wev);
        /* Freed from inside one of its callbacks, the owner may still use
         * what it pulled up from the input (a message being handled): the
         * buffers go when the callback returns, as a bufferevent's do. */
        if (c->in_cb == 0)
            conn_free_buffers(c);
    }
    c->bev = NULL;
    if (c->in_cb == 0)
        conn_destroy(c);
}
