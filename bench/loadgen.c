/* loadgen.c - the benchmarks' load generator.
 *
 * One thread per core, each with its own event_base and its own share of the
 * connections, so the generator scales with the machine instead of being the
 * bottleneck; a fan-out publisher gets a thread of its own. Sockets are driven
 * directly (read/write on the fd, one persistent event each) rather than through
 * bufferevents: every syscall and copy spent here is one the measured server
 * does not get on a machine it shares with us.
 *
 * Clients speak the length protocol (DESIGN §5.1) or WebSocket (RFC 6455: a
 * real handshake whose Sec-WebSocket-Accept is checked, masked client frames);
 * the publisher speaks the router protocol (§7) or nchan's HTTP publish. Every
 * message starts with its send time (16 hex digits of CLOCK_MONOTONIC ns; text,
 * so it is valid in a WebSocket text frame), which is how round-trip and
 * publish-to-delivery latencies are measured without per-message state.
 *
 * Scenarios (-s):
 *   rt       N clients, K messages of S bytes in flight each, closed loop (or
 *            open loop at -r messages/s): messages/s and latency percentiles.
 *   fanout   N WebSocket subscribers; a publisher sends SEND_ALL or CH_PUB (or
 *            nchan HTTP POSTs, or the router's HTTP API's POST /api/broadcast
 *            on -R keep-alive connections, one request each) as fast as they are delivered, with at most -W
 *            publications not yet delivered to everyone: deliveries/s and
 *            publish-to-delivery latency.
 *   idle     N connections opened and held: VmRSS of the given processes
 *            (-m label=pid,pid...) before and after, per connection.
 *   connect  K handshakes in progress per thread, each connection closed when
 *            its handshake completes: handshakes/s and handshake latency.
 *
 * Output: a human summary on stderr and one "RESULT key=value ..." line on
 * stdout for bench/run.sh. Every run is bounded in time (-d, -w and fixed
 * deadlines for setup) and count (-n). */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <event2/util.h>
#include <openssl/evp.h>

#include "../src/frame.h"
#include "../src/rmsg.h"
#include "../src/ws.h"

#define MAX_ADDRS 16
#define MAX_THREADS 64
#define MAX_PIDSETS 4
#define TS_LEN 16               /* hex digits of the send time at the start of a message */
#define SCRATCH (256 * 1024)    /* per-thread read buffer */
#define READY_DEADLINE_S 20     /* fan-out: every subscriber got a first message */
#define CHANNEL "bench"
#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

enum scenario { SC_RT, SC_FANOUT, SC_IDLE, SC_CONNECT };
enum proto { P_LENGTH, P_WS };
enum pubmode { PUB_SENDALL, PUB_CHPUB, PUB_HTTP, PUB_API };
enum phase { PH_SETUP, PH_READY, PH_WARMUP, PH_MEASURE, PH_DONE };
enum cstate { CS_CONNECTING, CS_HANDSHAKE, CS_OPEN, CS_CLOSED };
enum ckind { CK_CLIENT, CK_PUB_ROUTER, CK_PUB_HTTP };

/* ---- options ---- */

struct pidset {
    char label[32];
    int pids[64];
    int npids;
};

static struct {
    enum scenario sc;
    enum proto proto;
    struct sockaddr_storage addr[MAX_ADDRS];
    socklen_t addrlen[MAX_ADDRS];
    char host[MAX_ADDRS][64];
    int naddr;
    struct sockaddr_storage pub[MAX_ADDRS];
    socklen_t publen[MAX_ADDRS];
    char pubhost[MAX_ADDRS][64];
    int npub;
    const char *path, *pubpath, *label;
    const char *window_cmd; /* -X: the measured window is this command's run */
    long n;
    int k, size, threads, src_first, src_count, window, procs;
    double duration, warmup, hold, rate, setup_deadline;
    enum pubmode pubmode;
    struct pidset pidsets[MAX_PIDSETS];
    int npidsets;
} opt = {
    .sc = SC_RT, .proto = P_LENGTH, .path = "/", .pubpath = "/pub?id=" CHANNEL,
    .label = "-", .n = 100, .k = 1, .size = 64, .duration = 5, .warmup = 1, .hold = 1,
    .window = 0, .setup_deadline = 60, .procs = 1, .pubmode = PUB_SENDALL,
};

/* ---- latency histogram: log buckets, 256 per power of two (< 0.4% error) ---- */

#define HIST_SUB 256
#define HIST_MAXPOW 47
#define HIST_BUCKETS ((HIST_MAXPOW - 6) * HIST_SUB)

struct hist {
    uint64_t count, sum, max;
    uint64_t b[HIST_BUCKETS];
};

static int hist_index(uint64_t v)
{
    if (v < HIST_SUB)
        return (int)v;
    int m = 63 - __builtin_clzll(v);
    if (m > HIST_MAXPOW)
        return HIST_BUCKETS - 1;
    return (m - 7) * HIST_SUB + (int)((v >> (m - 8)) - HIST_SUB);
}

static uint64_t hist_low(int i)
{
    if (i < HIST_SUB)
        return (uint64_t)i;
    int m = i / HIST_SUB + 7;
    return ((uint64_t)(i % HIST_SUB) + HIST_SUB) << (m - 8);
}

static void hist_add(struct hist *h, uint64_t v)
{
    h->b[hist_index(v)]++;
    h->count++;
    h->sum += v;
    if (v > h->max)
        h->max = v;
}

static void hist_merge(struct hist *into, const struct hist *h)
{
    for (int i = 0; i < HIST_BUCKETS; i++)
        into->b[i] += h->b[i];
    into->count += h->count;
    into->sum += h->sum;
    if (h->max > into->max)
        into->max = h->max;
}

/* The value below which a fraction q of the samples fall (bucket midpoint). */
static uint64_t hist_quantile(const struct hist *h, double q)
{
    if (h->count == 0)
        return 0;
    uint64_t want = (uint64_t)(q * (double)h->count + 0.5), seen = 0;
    if (want < 1)
        want = 1;
    for (int i = 0; i < HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= want) {
            uint64_t lo = hist_low(i), hi = i + 1 < HIST_BUCKETS ? hist_low(i + 1) : lo;
            uint64_t mid = lo + (hi - lo) / 2;
            return mid < h->max ? mid : h->max;
        }
    }
    return h->max;
}

/* ---- shared state ---- */

/* What the processes of an idle run (-j) share; in one process, plain memory. */
struct shared_state {
    _Atomic int phase;
    _Atomic long opened;       /* connections whose handshake is done */
    _Atomic long closed_early; /* connections lost before the end */
};
static struct shared_state *sh;
static _Atomic long ready;         /* fan-out subscribers that got a first message */
static _Atomic long sids_known;    /* CH_PUB: subscribers that learned their SID */
static _Atomic long published;     /* fan-out publications, whole run */
static struct timespec t_zero;

/* -X: the window marks (SIGUSR1) a counting command sends; set by the handler. */
static _Atomic int window_marks;
static _Atomic uint64_t window_mark_ns[2];

static uint64_t now_ns(void);

static void on_window_mark(int sig)
{
    (void)sig;
    int i = atomic_fetch_add(&window_marks, 1);
    if (i > 1)
        return;
    atomic_store(&window_mark_ns[i], now_ns()); /* clock_gettime: async-signal-safe */
    atomic_store(&sh->phase, i == 0 ? PH_MEASURE : PH_DONE);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)(ts.tv_sec - t_zero.tv_sec) * 1000000000ull + (uint64_t)ts.tv_nsec -
           (uint64_t)t_zero.tv_nsec;
}

struct conn;

struct thread {
    int id;
    pthread_t tid;
    struct event_base *base;
    struct event *tick;
    struct conn **conns;
    long nconns;
    long next_start;       /* connect/idle: next connection index to open */
    long inprogress;       /* handshakes in progress */
    uint8_t *scratch;
    uint64_t rng;
    /* counters of the measured window */
    uint64_t msgs, bytes, errors, missed;
    struct hist hist;
    /* rt open loop */
    double tokens;
    uint64_t last_tick;
    long rr;
    /* fan-out deliveries of this thread, whole run: written by it alone, read
     * by the publisher for its window (no shared counter to bounce between cores) */
    uint64_t dlv_local;
    _Atomic uint64_t dlv;
    /* the publisher thread */
    int is_pub;
    int pub_stage;         /* 0 wait SIDs, 1 CH_ADD sent, 2 window base taken */
    uint64_t last_ready_pub;
    long pub_base, dlv_base;
};

struct conn {
    struct thread *th;
    enum ckind kind;
    enum cstate state;
    int fd, ai;             /* ai: index into the address list */
    long idx;
    struct event *ev;
    short evmask;
    int inflight;           /* rt: messages sent, not answered; http pub: 1 while waiting */
    int got_first, await_sid;
    uint64_t t_start;
    char key[25];           /* Sec-WebSocket-Key sent */
    char sid[RMSG_SID_LEN];
    uint8_t *in, *out;
    size_t inlen, incap, outlen, outcap;
};

static struct thread threads[MAX_THREADS + 1];
static struct thread *pubthread;
static struct conn **allconns;
static long nready_target;

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static void die(const char *fmt, const char *arg)
{
    fprintf(stderr, "loadgen: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    exit(2);
}

/* ---- output buffering ---- */

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (!q) {
        fprintf(stderr, "loadgen: out of memory\n");
        abort();
    }
    return q;
}

static uint8_t *out_reserve(struct conn *c, size_t n)
{
    if (c->outlen + n > c->outcap) {
        size_t cap = c->outcap ? c->outcap : 256;
        while (cap < c->outlen + n)
            cap *= 2;
        c->out = xrealloc(c->out, cap);
        c->outcap = cap;
    }
    uint8_t *p = c->out + c->outlen;
    c->outlen += n;
    return p;
}

static void conn_event(evutil_socket_t fd, short what, void *arg);

static void conn_set_events(struct conn *c, short mask)
{
    if (c->evmask == mask)
        return;
    event_del(c->ev);
    event_assign(c->ev, c->th->base, c->fd, mask | EV_PERSIST, conn_event, c);
    event_add(c->ev, NULL);
    c->evmask = mask;
}

static void conn_close(struct conn *c, int error);

/* Writes what is buffered; leaves the rest for EV_WRITE. -1 when the socket died. */
static int conn_flush(struct conn *c)
{
    size_t off = 0;
    while (off < c->outlen) {
        ssize_t w = write(c->fd, c->out + off, c->outlen - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                break;
            conn_close(c, 1);
            return -1;
        }
        off += (size_t)w;
    }
    if (off > 0) {
        memmove(c->out, c->out + off, c->outlen - off);
        c->outlen -= off;
    }
    if (c->outlen == 0 && c->outcap > 4096) { /* idle connections keep no buffer */
        free(c->out);
        c->out = NULL;
        c->outcap = 0;
    }
    conn_set_events(c, c->outlen ? EV_READ | EV_WRITE : EV_READ);
    return 0;
}

/* ---- messages ---- */

static void put_ts(uint8_t *p, uint64_t t)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = TS_LEN - 1; i >= 0; i--, t >>= 4)
        p[i] = (uint8_t)hex[t & 15];
}

static int get_ts(const uint8_t *p, size_t n, uint64_t *t)
{
    uint64_t v = 0;
    if (n < TS_LEN)
        return -1;
    for (int i = 0; i < TS_LEN; i++) {
        int d = p[i];
        if (d >= '0' && d <= '9')
            v = v << 4 | (uint64_t)(d - '0');
        else if (d >= 'a' && d <= 'f')
            v = v << 4 | (uint64_t)(d - 'a' + 10);
        else
            return -1;
    }
    *t = v;
    return 0;
}

/* Appends one client message of opt.size bytes: the send time, then 'x's. */
static void send_message(struct conn *c)
{
    size_t n = (size_t)opt.size;
    uint8_t *p;
    if (opt.proto == P_LENGTH) {
        p = out_reserve(c, FRAME_HEADER_LEN + n);
        frame_encode(p, (uint32_t)n);
        p += FRAME_HEADER_LEN;
        put_ts(p, now_ns());
        memset(p + TS_LEN, 'x', n - TS_LEN);
    } else {
        uint8_t hdr[WS_MAX_FRAME_HEADER], mask[4];
        uint64_t r = rng_next(&c->th->rng);
        memcpy(mask, &r, 4);
        size_t hl = ws_client_frame_header(hdr, WS_OP_TEXT, 1, n, mask);
        p = out_reserve(c, hl + n);
        memcpy(p, hdr, hl);
        p += hl;
        put_ts(p, now_ns());
        memset(p + TS_LEN, 'x', n - TS_LEN);
        ws_unmask(p, n, mask, 0);
    }
    c->inflight++;
}

static void send_ws_control(struct conn *c, int opcode, const uint8_t *payload, size_t n)
{
    uint8_t hdr[WS_MAX_FRAME_HEADER], mask[4] = {1, 2, 3, 4};
    size_t hl = ws_client_frame_header(hdr, opcode, 1, n, mask);
    uint8_t *p = out_reserve(c, hl + n);
    memcpy(p, hdr, hl);
    memcpy(p + hl, payload, n);
    ws_unmask(p + hl, n, mask, 0);
}

static int measuring(void)
{
    return atomic_load_explicit(&sh->phase, memory_order_relaxed) == PH_MEASURE;
}

/* One complete message from the server. */
static void on_message(struct conn *c, const uint8_t *p, size_t n)
{
    struct thread *th = c->th;
    uint64_t t;
    if (c->await_sid) { /* CH_PUB: the connect event's reply is our SID */
        if (n == RMSG_SID_LEN) {
            memcpy(c->sid, p, RMSG_SID_LEN);
            c->await_sid = 0;
            atomic_fetch_add(&sids_known, 1);
        }
        return;
    }
    if (opt.sc == SC_FANOUT) {
        atomic_store_explicit(&th->dlv, ++th->dlv_local, memory_order_relaxed);
        if (!c->got_first) {
            c->got_first = 1;
            atomic_fetch_add(&ready, 1);
        }
    }
    if (opt.sc == SC_RT && c->inflight > 0)
        c->inflight--;
    if (measuring()) {
        th->msgs++;
        th->bytes += n;
        uint64_t now = now_ns();
        if (get_ts(p, n, &t) == 0 && t <= now) /* (a welcome SID is not a time) */
            hist_add(&th->hist, now - t);
    }
    if (opt.sc == SC_RT && opt.rate == 0 && atomic_load(&sh->phase) < PH_DONE)
        send_message(c);
}

/* ---- WebSocket handshake ---- */

static void ws_send_request(struct conn *c)
{
    uint8_t raw[16];
    uint64_t a = rng_next(&c->th->rng), b = rng_next(&c->th->rng);
    memcpy(raw, &a, 8);
    memcpy(raw + 8, &b, 8);
    EVP_EncodeBlock((unsigned char *)c->key, raw, 16);
    char req[512];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                     "Origin: http://%s\r\n\r\n",
                     opt.path, opt.host[c->ai], c->key, opt.host[c->ai]);
    memcpy(out_reserve(c, (size_t)n), req, (size_t)n);
}

/* Returns bytes of head consumed, 0 for more, -1 for a failed handshake. */
static long ws_read_response(struct conn *c, const uint8_t *p, size_t n)
{
    const uint8_t *end = memmem(p, n, "\r\n\r\n", 4);
    if (!end)
        return n > 8192 ? -1 : 0;
    size_t hl = (size_t)(end - p) + 4;
    char head[8193];
    if (hl > sizeof(head) - 1)
        return -1;
    memcpy(head, p, hl);
    head[hl] = '\0';
    if (strncmp(head, "HTTP/1.1 101", 12) != 0)
        return -1;
    char want[WS_ACCEPT_LEN + 1];
    ws_accept_key(c->key, strlen(c->key), want);
    const char *h = strcasestr(head, "\r\nSec-WebSocket-Accept:");
    if (!h)
        return -1;
    h += 23;
    while (*h == ' ' || *h == '\t')
        h++;
    if (strncmp(h, want, WS_ACCEPT_LEN) != 0)
        return -1;
    return (long)hl;
}

/* ---- reading ---- */

/* Parses complete messages at p; returns bytes consumed or -1 (close). */
static long parse_client(struct conn *c, const uint8_t *p, size_t n)
{
    size_t used = 0;
    if (c->state == CS_HANDSHAKE) {
        long hl = ws_read_response(c, p, n);
        if (hl <= 0)
            return hl;
        used = (size_t)hl;
        c->state = CS_OPEN;
        atomic_fetch_add(&sh->opened, 1);
        struct thread *th = c->th;
        th->inprogress--;
        if (opt.sc == SC_CONNECT) {
            if (measuring()) {
                th->msgs++;
                hist_add(&th->hist, now_ns() - c->t_start);
            }
            return -2; /* done with this one: the caller closes it and opens the next */
        }
        if (opt.sc == SC_RT && opt.rate == 0)
            for (int i = 0; i < opt.k; i++)
                send_message(c);
    }
    while (used < n) {
        const uint8_t *q = p + used;
        size_t left = n - used;
        if (opt.proto == P_LENGTH) {
            uint32_t len;
            if (frame_decode(q, left, 1u << 30, &len) == FRAME_AGAIN || left < 4 + (size_t)len)
                break;
            on_message(c, q + 4, len);
            used += 4 + (size_t)len;
            continue;
        }
        struct ws_frame f;
        int rc = ws_parse_frame(q, left, 0, 1u << 30, &f);
        if (rc == WS_AGAIN)
            break;
        if (rc == WS_ERROR)
            return -1;
        if (left < f.header_len + f.payload_len)
            break;
        const uint8_t *pl = q + f.header_len;
        size_t plen = (size_t)f.payload_len;
        if (f.opcode == WS_OP_PING)
            send_ws_control(c, WS_OP_PONG, pl, plen);
        else if (f.opcode == WS_OP_CLOSE)
            return -1;
        else if (f.opcode != WS_OP_PONG && f.fin)
            on_message(c, pl, plen);
        used += f.header_len + plen;
    }
    return (long)used;
}

/* HTTP responses to the nchan publisher: head, then Content-Length bytes. */
static long parse_http_pub(struct conn *c, const uint8_t *p, size_t n)
{
    size_t used = 0;
    while (used < n) {
        const uint8_t *end = memmem(p + used, n - used, "\r\n\r\n", 4);
        if (!end)
            break;
        size_t hl = (size_t)(end - (p + used)) + 4;
        long clen = 0;
        const uint8_t *h = p + used;
        for (size_t i = 0; i + 16 < hl; i++)
            if ((h[i] == '\n') && strncasecmp((const char *)h + i + 1, "Content-Length:", 15) == 0)
                clen = strtol((const char *)h + i + 16, NULL, 10);
        if (n - used < hl + (size_t)clen)
            break;
        /* The router's API answers 200 {"ok":true}; anything else is a failure
         * that must not count as a publication. */
        if (opt.pubmode == PUB_API && (hl < 12 || memcmp(h + 9, "200", 3) != 0)) {
            fprintf(stderr, "loadgen: the HTTP API answered %.*s\n", (int)(hl > 40 ? 40 : hl), h);
            return -1;
        }
        used += hl + (size_t)clen;
        c->inflight = 0;
    }
    return (long)used;
}

static void start_next(struct thread *th);
static void pub_tick(struct thread *th);

static void conn_read(struct conn *c)
{
    struct thread *th = c->th;
    for (;;) {
        ssize_t r;
        const uint8_t *p;
        size_t n;
        if (c->inlen == 0) {
            r = read(c->fd, th->scratch, SCRATCH);
            p = th->scratch;
        } else {
            if (c->incap - c->inlen < 65536) {
                c->incap = c->inlen + 65536;
                c->in = xrealloc(c->in, c->incap);
            }
            r = read(c->fd, c->in + c->inlen, c->incap - c->inlen);
            p = c->in;
        }
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
            conn_close(c, 1);
            return;
        }
        if (r < 0)
            break;
        n = (p == c->in ? c->inlen : 0) + (size_t)r;
        long used;
        if (c->kind == CK_PUB_HTTP)
            used = parse_http_pub(c, p, n);
        else if (c->kind == CK_PUB_ROUTER)
            used = (long)n; /* the router says nothing we need */
        else
            used = parse_client(c, p, n);
        if (used == -2) {
            conn_close(c, 0);
            start_next(th);
            return;
        }
        if (used < 0) {
            conn_close(c, 1);
            return;
        }
        /* The router's HTTP API: the next request as soon as the answer is
         * in, not at the next tick (one request per connection and tick would
         * measure the tick, not the server). */
        if (c->kind == CK_PUB_HTTP && opt.pubmode == PUB_API && !c->inflight && used > 0)
            pub_tick(th);
        size_t rest = n - (size_t)used;
        if (p == th->scratch) {
            if (rest) {
                if (c->incap < rest + 65536) {
                    c->incap = rest + 65536;
                    c->in = xrealloc(c->in, c->incap);
                }
                memcpy(c->in, p + used, rest);
            }
        } else if (used) {
            memmove(c->in, c->in + used, rest);
        }
        c->inlen = rest;
        if (rest == 0 && c->in) {
            free(c->in);
            c->in = NULL;
            c->incap = 0;
        }
        if ((size_t)r < SCRATCH / 2)
            break;
    }
    if (c->outlen && c->state != CS_CLOSED)
        conn_flush(c);
}

static void conn_connected(struct conn *c)
{
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
        conn_close(c, 1);
        return;
    }
    if (c->kind != CK_CLIENT) {
        c->state = CS_OPEN;
        conn_set_events(c, EV_READ);
        return;
    }
    if (opt.proto == P_WS) {
        c->state = CS_HANDSHAKE;
        ws_send_request(c);
        conn_flush(c);
        return;
    }
    c->state = CS_OPEN;
    atomic_fetch_add(&sh->opened, 1);
    c->th->inprogress--;
    if (opt.sc == SC_RT && opt.rate == 0)
        for (int i = 0; i < opt.k; i++)
            send_message(c);
    conn_flush(c);
}

static void conn_event(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    (void)fd;
    if (c->state == CS_CONNECTING) {
        conn_connected(c);
        return;
    }
    if (what & EV_READ) {
        conn_read(c);
        if (c->state == CS_CLOSED)
            return;
    }
    if ((what & EV_WRITE) && c->outlen)
        conn_flush(c);
}

/* ---- connections ---- */

static void conn_close(struct conn *c, int error)
{
    if (c->state == CS_CLOSED)
        return;
    if (c->state != CS_OPEN && c->kind == CK_CLIENT)
        c->th->inprogress--;
    if (error && atomic_load(&sh->phase) < PH_DONE) {
        atomic_fetch_add(&sh->closed_early, 1);
        if (measuring())
            c->th->errors++;
    }
    c->state = CS_CLOSED;
    if (c->ev)
        event_del(c->ev);
    /* Reset, not FIN: no TIME_WAIT left behind to eat the port space. */
    struct linger lg = {1, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(c->fd);
    c->fd = -1;
    free(c->in);
    free(c->out);
    c->in = c->out = NULL;
    c->inlen = c->incap = c->outlen = c->outcap = 0;
}

static int conn_open(struct conn *c)
{
    const struct sockaddr *sa;
    socklen_t salen;
    if (c->kind == CK_CLIENT) {
        sa = (struct sockaddr *)&opt.addr[c->ai];
        salen = opt.addrlen[c->ai];
    } else {
        sa = (struct sockaddr *)&opt.pub[c->ai];
        salen = opt.publen[c->ai];
    }
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fprintf(stderr, "loadgen: socket: %s\n", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (opt.src_count > 0 && sa->sa_family == AF_INET && c->kind == CK_CLIENT) {
        /* Many source addresses: each has its own ephemeral port range, picked
         * at connect time (IP_BIND_ADDRESS_NO_PORT), so >28K connections fit. */
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(0x7f000000u | (uint32_t)(opt.src_first + c->idx % opt.src_count));
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0) {
            fprintf(stderr, "loadgen: bind: %s\n", strerror(errno));
            close(fd);
            return -1;
        }
    }
    c->fd = fd;
    c->state = CS_CONNECTING;
    c->inflight = 0;
    c->got_first = 0;
    c->t_start = now_ns();
    if (c->kind == CK_CLIENT)
        c->th->inprogress++;
    if (connect(fd, sa, salen) < 0 && errno != EINPROGRESS) {
        conn_close(c, 1);
        return -1;
    }
    if (!c->ev)
        c->ev = event_new(c->th->base, fd, EV_WRITE | EV_PERSIST, conn_event, c);
    else
        event_assign(c->ev, c->th->base, fd, EV_WRITE | EV_PERSIST, conn_event, c);
    c->evmask = EV_WRITE;
    event_add(c->ev, NULL);
    return 0;
}

/* Opens connections up to the in-progress limit: every client at setup (rt,
 * fan-out, idle), or endlessly one after another (connect). */
static void start_next(struct thread *th)
{
    long limit = opt.sc == SC_CONNECT ? opt.k : 256;
    if (atomic_load(&sh->phase) == PH_DONE)
        return;
    while (th->inprogress < limit) {
        if (opt.sc == SC_CONNECT) {
            /* Reuse the slots round-robin; a slot still busy is skipped. */
            struct conn *c = NULL;
            for (long i = 0; i < th->nconns && !c; i++) {
                struct conn *x = th->conns[(th->next_start + i) % th->nconns];
                if (x->state == CS_CLOSED)
                    c = x;
            }
            if (!c)
                return;
            th->next_start = (c->idx / opt.threads + 1) % th->nconns;
            conn_open(c);
            continue;
        }
        if (th->next_start >= th->nconns)
            return;
        conn_open(th->conns[th->next_start++]);
    }
}

/* ---- per-thread timer: setup progress, open-loop pacing, publisher, stop ---- */

static void pub_tick(struct thread *th);

static void rt_paced(struct thread *th)
{
    uint64_t now = now_ns();
    double per_ns = opt.rate / opt.threads / 1e9;
    if (th->last_tick)
        th->tokens += (double)(now - th->last_tick) * per_ns;
    th->last_tick = now;
    if (th->tokens > opt.rate / opt.threads / 100 + 1) /* never burst more than 10 ms */
        th->tokens = opt.rate / opt.threads / 100 + 1;
    while (th->tokens >= 1) {
        struct conn *c = NULL;
        for (long i = 0; i < th->nconns && !c; i++) {
            struct conn *x = th->conns[th->rr];
            th->rr = (th->rr + 1) % th->nconns;
            if (x->state == CS_OPEN && x->inflight < opt.k)
                c = x;
        }
        th->tokens -= 1;
        if (!c) {
            if (measuring())
                th->missed++;
            continue;
        }
        send_message(c);
        conn_flush(c);
    }
}

static void thread_tick(evutil_socket_t fd, short what, void *arg)
{
    struct thread *th = arg;
    (void)fd;
    (void)what;
    int ph = atomic_load(&sh->phase);
    if (ph == PH_DONE) {
        for (long i = 0; i < th->nconns; i++)
            conn_close(th->conns[i], 0);
        event_base_loopbreak(th->base);
        return;
    }
    if (th->is_pub) {
        pub_tick(th);
        return;
    }
    start_next(th);
    if (opt.sc == SC_RT && opt.rate > 0 && ph >= PH_WARMUP)
        rt_paced(th);
}

static void *thread_main(void *arg)
{
    struct thread *th = arg;
    struct timeval tv = {0, 1000};
    th->tick = event_new(th->base, -1, EV_PERSIST, thread_tick, th);
    event_add(th->tick, &tv);
    if (!th->is_pub)
        start_next(th);
    event_base_dispatch(th->base);
    event_free(th->tick);
    return NULL;
}

/* ---- the fan-out publisher ---- */

static void pub_router(struct conn *c, int type, const uint8_t *s, size_t slen,
                       const uint8_t *d, size_t dlen)
{
    uint8_t *p = out_reserve(c, RMSG_HEADER_LEN + slen + dlen);
    rmsg_encode_header(p, (uint16_t)type, (uint16_t)slen, (uint32_t)dlen);
    if (slen)
        memcpy(p + RMSG_HEADER_LEN, s, slen);
    if (dlen)
        memcpy(p + RMSG_HEADER_LEN + slen, d, dlen);
}

/* One publication to every publisher connection (one per -R address). */
static void publish_one(struct thread *th)
{
    uint8_t msg[4096];
    size_t n = (size_t)opt.size;
    put_ts(msg, now_ns());
    memset(msg + TS_LEN, 'x', n - TS_LEN);
    for (long i = 0; i < th->nconns; i++) {
        struct conn *c = th->conns[i];
        if (c->state != CS_OPEN || (opt.pubmode >= PUB_HTTP && c->inflight))
            continue;
        if (opt.pubmode == PUB_API) {
            /* The message is hex and 'x': JSON-safe as it is. */
            char head[512];
            int hl = snprintf(head, sizeof(head),
                              "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                              "Content-Length: %zu\r\n\r\n{\"data\":\"",
                              opt.pubpath, opt.pubhost[c->ai], n + 11);
            uint8_t *p = out_reserve(c, (size_t)hl + n + 2);
            memcpy(p, head, (size_t)hl);
            memcpy(p + hl, msg, n);
            memcpy(p + hl + n, "\"}", 2);
            c->inflight = 1;
            break;
        } else if (opt.pubmode == PUB_HTTP) {
            char head[512];
            int hl = snprintf(head, sizeof(head),
                              "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: text/plain\r\n"
                              "Content-Length: %zu\r\n\r\n",
                              opt.pubpath, opt.pubhost[c->ai], n);
            uint8_t *p = out_reserve(c, (size_t)hl + n);
            memcpy(p, head, (size_t)hl);
            memcpy(p + hl, msg, n);
            c->inflight = 1;
            break; /* HTTP: each -R connection is one more publisher, one request each */
        } else if (opt.pubmode == PUB_CHPUB) {
            pub_router(c, RMSG_CH_PUB, (const uint8_t *)CHANNEL, strlen(CHANNEL), msg, n);
        } else {
            pub_router(c, RMSG_SEND_ALL, NULL, 0, msg, n);
        }
    }
    atomic_fetch_add(&published, 1);
}

/* CH_PUB: every subscriber's SID joins the channel, 4095 SIDs a message. */
static void pub_ch_add(struct thread *th)
{
    static uint8_t sids[RMSG_MAX_SIDS * RMSG_SID_LEN];
    size_t k = 0;
    for (long i = 0; i <= opt.n; i++) {
        if (k == RMSG_MAX_SIDS || (i == opt.n && k > 0)) {
            for (long j = 0; j < th->nconns; j++)
                pub_router(th->conns[j], RMSG_CH_ADD, sids, k * RMSG_SID_LEN,
                           (const uint8_t *)CHANNEL, strlen(CHANNEL));
            k = 0;
        }
        if (i < opt.n && allconns[i]->state == CS_OPEN && !allconns[i]->await_sid)
            memcpy(sids + RMSG_SID_LEN * k++, allconns[i]->sid, RMSG_SID_LEN);
    }
}

static long delivered_sum(void)
{
    long sum = 0;
    for (int t = 0; t < opt.threads; t++)
        sum += (long)atomic_load_explicit(&threads[t].dlv, memory_order_relaxed);
    return sum;
}

static void pub_tick(struct thread *th)
{
    int ph = atomic_load(&sh->phase);
    for (long i = 0; i < th->nconns; i++)
        if (th->conns[i]->state == CS_CLOSED && ph < PH_WARMUP)
            conn_open(th->conns[i]);
    if (ph < PH_READY)
        return;
    for (long i = 0; i < th->nconns; i++)
        if (th->conns[i]->state != CS_OPEN)
            return;
    if (opt.pubmode == PUB_CHPUB && th->pub_stage == 0) {
        pub_ch_add(th);
        th->pub_stage = 1;
    }
    if (ph == PH_READY) {
        /* A message every 20 ms until every subscriber has had one. */
        uint64_t now = now_ns();
        if (now - th->last_ready_pub > 20000000ull) {
            th->last_ready_pub = now;
            publish_one(th);
        }
    } else {
        /* As fast as they are delivered: at most -W publications outstanding. */
        long target = nready_target > 0 ? nready_target : 1;
        int budget = 4096;
        if (th->pub_stage < 2) { /* ready-phase messages reached only some: start afresh */
            th->pub_stage = 2;
            th->pub_base = atomic_load(&published);
            th->dlv_base = delivered_sum();
        }
        long dsum = delivered_sum() - th->dlv_base;
        while (budget-- > 0) {
            long out = atomic_load(&published) - th->pub_base - dsum / target;
            if (out >= opt.window)
                break;
            int busy = 0, idle = 0;
            for (long i = 0; i < th->nconns; i++) {
                busy |= th->conns[i]->outlen > 65536;
                idle |= !th->conns[i]->inflight;
            }
            if (busy || !idle)
                break;
            publish_one(th);
        }
    }
    for (long i = 0; i < th->nconns; i++)
        if (th->conns[i]->outlen)
            conn_flush(th->conns[i]);
}

/* ---- results ---- */

static long rss_kib(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = strtol(line + 6, NULL, 10);
    fclose(f);
    return kb;
}

static long pidset_rss(int i)
{
    long sum = 0;
    for (int j = 0; j < opt.pidsets[i].npids; j++) {
        long r = rss_kib(opt.pidsets[i].pids[j]);
        if (r > 0)
            sum += r;
    }
    return sum;
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static int wait_for(_Atomic long *counter, long want, double deadline_s)
{
    uint64_t end = now_ns() + (uint64_t)(deadline_s * 1e9);
    while (atomic_load(counter) < want && now_ns() < end)
        sleep_s(0.01);
    return atomic_load(counter) >= want;
}

/* ---- options ---- */

static int parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len, char *host)
{
    int l = sizeof(*ss);
    if (evutil_parse_sockaddr_port(s, (struct sockaddr *)ss, &l) < 0)
        return -1;
    *len = (socklen_t)l;
    snprintf(host, 64, "%s", s);
    return 0;
}

static void parse_pidset(const char *s)
{
    if (opt.npidsets == MAX_PIDSETS)
        die("too many -m", s);
    const char *eq = strchr(s, '=');
    if (!eq || eq - s >= 32)
        die("-m wants LABEL=PID[,PID...], got %s", s);
    struct pidset *ps = &opt.pidsets[opt.npidsets++];
    memcpy(ps->label, s, (size_t)(eq - s));
    for (const char *p = eq + 1; *p && ps->npids < 64;) {
        ps->pids[ps->npids++] = atoi(p);
        p = strchr(p, ',');
        if (!p)
            break;
        p++;
    }
}

static void usage(void)
{
    fprintf(stderr,
            "usage: loadgen -s rt|fanout|idle|connect -p length|ws -a HOST:PORT [-a ...]\n"
            "  -n N        clients (subscribers, connections)          [100]\n"
            "  -k K        rt: messages in flight per client; connect: handshakes\n"
            "              in progress per thread                      [1]\n"
            "  -b S        message bytes (>= 16)                       [64]\n"
            "  -d SECS     measured time; -w SECS warm-up before it    [5, 1]\n"
            "  -t T        client threads                              [cores]\n"
            "  -B F:C      source addresses 127.0.0.F .. 127.0.0.(F+C-1)\n"
            "  -u PATH     WebSocket request path                      [/]\n"
            "  -r RATE     rt: open loop at RATE messages/s (K caps in flight)\n"
            "  -R H:P      fanout: publisher target (repeatable: router protocol sends each\n"
            "              message to each; http uses them as parallel publishers)\n"
            "  -P MODE     fanout: sendall | chpub (router) | http (nchan POST) |\n"
            "              api (the router's HTTP API, JSON)            [sendall]\n"
            "  -U PATH     fanout http, api: publish path  [/pub?id=bench, /api/broadcast]\n"
            "  -W N        fanout: publications outstanding at most    [100000/N]\n"
            "  -m L=P,P    idle: report VmRSS of these pids (repeatable)\n"
            "  -H SECS     idle: settle time before measuring          [1]\n"
            "  -S SECS     give up connecting everyone after SECS      [60]\n"
            "  -j P        idle: P processes share the connections (a process may\n"
            "              hold fewer descriptors than the run needs)  [1]\n"
            "  -T LABEL    label for the RESULT line\n"
            "  -X CMD      rt, fanout: the measured window is the run of the shell command\n"
            "              CMD instead of -d seconds; if CMD mentions $LOADGEN_PID, the\n"
            "              window is between the first two SIGUSR1 it sends there (a\n"
            "              syscall or allocation count over exactly the messages counted)\n");
    exit(2);
}

static void parse_options(int argc, char **argv)
{
    int o;
    opt.threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    while ((o = getopt(argc, argv, "s:p:a:n:k:b:d:w:t:B:u:r:R:P:U:W:m:H:S:j:T:X:h")) != -1) {
        switch (o) {
        case 's':
            if (!strcmp(optarg, "rt")) opt.sc = SC_RT;
            else if (!strcmp(optarg, "fanout")) opt.sc = SC_FANOUT;
            else if (!strcmp(optarg, "idle")) opt.sc = SC_IDLE;
            else if (!strcmp(optarg, "connect")) opt.sc = SC_CONNECT;
            else die("unknown scenario %s", optarg);
            break;
        case 'p':
            if (!strcmp(optarg, "length")) opt.proto = P_LENGTH;
            else if (!strcmp(optarg, "ws")) opt.proto = P_WS;
            else die("unknown protocol %s", optarg);
            break;
        case 'a':
            if (opt.naddr == MAX_ADDRS ||
                parse_addr(optarg, &opt.addr[opt.naddr], &opt.addrlen[opt.naddr],
                           opt.host[opt.naddr]) < 0)
                die("bad address %s", optarg);
            opt.naddr++;
            break;
        case 'R':
            if (opt.npub == MAX_ADDRS ||
                parse_addr(optarg, &opt.pub[opt.npub], &opt.publen[opt.npub],
                           opt.pubhost[opt.npub]) < 0)
                die("bad address %s", optarg);
            opt.npub++;
            break;
        case 'n': opt.n = atol(optarg); break;
        case 'k': opt.k = atoi(optarg); break;
        case 'b': opt.size = atoi(optarg); break;
        case 'd': opt.duration = atof(optarg); break;
        case 'w': opt.warmup = atof(optarg); break;
        case 't': opt.threads = atoi(optarg); break;
        case 'B':
            if (sscanf(optarg, "%d:%d", &opt.src_first, &opt.src_count) != 2 ||
                opt.src_first < 1 || opt.src_count < 1 || opt.src_first + opt.src_count > 255)
                die("-B wants FIRST:COUNT, got %s", optarg);
            break;
        case 'u': opt.path = optarg; break;
        case 'r': opt.rate = atof(optarg); break;
        case 'P':
            if (!strcmp(optarg, "sendall")) opt.pubmode = PUB_SENDALL;
            else if (!strcmp(optarg, "chpub")) opt.pubmode = PUB_CHPUB;
            else if (!strcmp(optarg, "http")) opt.pubmode = PUB_HTTP;
            else if (!strcmp(optarg, "api")) {
                opt.pubmode = PUB_API;
                if (!strcmp(opt.pubpath, "/pub?id=" CHANNEL))
                    opt.pubpath = "/api/broadcast";
            }
            else die("unknown publish mode %s", optarg);
            break;
        case 'U': opt.pubpath = optarg; break;
        case 'W': opt.window = atoi(optarg); break;
        case 'm': parse_pidset(optarg); break;
        case 'H': opt.hold = atof(optarg); break;
        case 'S': opt.setup_deadline = atof(optarg); break;
        case 'j': opt.procs = atoi(optarg); break;
        case 'T': opt.label = optarg; break;
        case 'X': opt.window_cmd = optarg; break;
        default: usage();
        }
    }
    if (opt.naddr == 0 || opt.n < 1 || opt.k < 1 || opt.threads < 1 ||
        opt.size < TS_LEN || opt.size > 4000000)
        usage();
    if (opt.threads > MAX_THREADS)
        opt.threads = MAX_THREADS;
    if (opt.threads > opt.n)
        opt.threads = (int)opt.n;
    if (opt.window <= 0) /* about 100K deliveries outstanding: deep enough, never a slow consumer */
        opt.window = opt.n >= 12500 ? 8 : (int)(100000 / opt.n);
    if (opt.sc == SC_FANOUT && (opt.npub == 0 || opt.size > 4096 || opt.proto != P_WS))
        die("%s", "fanout needs -p ws, -R and -b <= 4096");
}

int main(int argc, char **argv)
{
    parse_options(argc, argv);
    clock_gettime(CLOCK_MONOTONIC, &t_zero);
    evthread_use_pthreads();

    /* Descriptors: one per connection plus slack. Root may raise the hard limit. */
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rlim_t want = (rlim_t)(opt.sc == SC_IDLE && opt.procs > 1 ? opt.n / opt.procs : opt.n) + 1024;
    if (rl.rlim_cur < want) {
        rl.rlim_cur = want;
        if (rl.rlim_max < want)
            rl.rlim_max = want;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
            getrlimit(RLIMIT_NOFILE, &rl);
            fprintf(stderr, "loadgen: cannot raise the fd limit to %lu (have %lu)\n",
                    (unsigned long)want, (unsigned long)rl.rlim_cur);
        }
    }

    sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        die("%s", "mmap failed");
    atomic_store(&sh->phase, PH_SETUP);
    long rss_before[MAX_PIDSETS];
    for (int i = 0; i < opt.npidsets; i++)
        rss_before[i] = pidset_rss(i);

    /* Idle runs may be split over processes: each opens its share of the
     * connections and holds them until the parent says the run is done. */
    long first = 0, count = opt.n;
    int child = 0, nkids = opt.sc == SC_IDLE && opt.procs > 1 ? opt.procs : 0;
    pid_t kids[256];
    if (nkids > 256)
        nkids = 256;
    for (int i = 0; i < nkids; i++) {
        long lo = opt.n * i / nkids, hi = opt.n * (i + 1) / nkids;
        kids[i] = fork();
        if (kids[i] == 0) {
            first = lo;
            count = hi - lo;
            child = 1;
            opt.npidsets = 0;
            break;
        }
    }
    int nt = opt.threads;
    if (nkids > 0 && !child)
        goto control; /* the parent only watches and measures */
    if (nt > count)
        nt = (int)count;

    allconns = calloc((size_t)opt.n, sizeof(*allconns));
    for (int t = 0; t < nt + 1; t++) {
        struct thread *th = &threads[t];
        th->id = t;
        th->base = event_base_new();
        th->scratch = malloc(SCRATCH);
        th->rng = 0x9e3779b97f4a7c15ull * (uint64_t)(t + 1) ^ (uint64_t)getpid();
        th->conns = calloc((size_t)(count / nt + 2 + MAX_ADDRS), sizeof(struct conn *));
    }
    for (long i = first; i < first + count; i++) {
        struct conn *c = calloc(1, sizeof(*c));
        struct thread *th = &threads[i % nt];
        c->th = th;
        c->idx = i;
        c->ai = (int)(i % opt.naddr);
        c->fd = -1;
        c->state = CS_CLOSED;
        c->await_sid = opt.sc == SC_FANOUT && opt.pubmode == PUB_CHPUB;
        th->conns[th->nconns++] = c;
        allconns[i] = c;
    }
    if (opt.sc == SC_FANOUT) {
        pubthread = &threads[nt];
        pubthread->is_pub = 1;
        for (int i = 0; i < opt.npub; i++) {
            struct conn *c = calloc(1, sizeof(*c));
            c->th = pubthread;
            c->kind = opt.pubmode >= PUB_HTTP ? CK_PUB_HTTP : CK_PUB_ROUTER;
            c->ai = i;
            c->fd = -1;
            c->state = CS_CLOSED;
            pubthread->conns[pubthread->nconns++] = c;
        }
    }

    for (int t = 0; t < nt + (pubthread != NULL); t++)
        pthread_create(&threads[t].tid, NULL, thread_main, &threads[t]);
    if (child) {
        for (int t = 0; t < nt; t++)
            pthread_join(threads[t].tid, NULL);
        _exit(0);
    }
control:;

    /* Phases: connect everyone, (fan-out) get every subscriber a first message,
     * warm up, measure, stop. */
    uint64_t t_setup = now_ns();
    double measured = 0;
    long nopen = 0;
    long rss_after[MAX_PIDSETS] = {0};
    if (opt.sc != SC_CONNECT) {
        wait_for(&sh->opened, opt.n, opt.setup_deadline);
        nopen = atomic_load(&sh->opened);
        if (nopen < opt.n)
            fprintf(stderr, "loadgen: only %ld of %ld connections opened\n", nopen, opt.n);
    }
    double setup_s = (double)(now_ns() - t_setup) / 1e9;
    if (opt.sc == SC_IDLE) {
        sleep_s(opt.hold);
        for (int i = 0; i < opt.npidsets; i++)
            rss_after[i] = pidset_rss(i);
        nopen = atomic_load(&sh->opened) - atomic_load(&sh->closed_early);
    } else {
        if (opt.sc == SC_FANOUT) {
            if (opt.pubmode == PUB_CHPUB &&
                !wait_for(&sids_known, nopen, READY_DEADLINE_S))
                fprintf(stderr, "loadgen: only %ld of %ld subscribers learned their SID\n",
                        atomic_load(&sids_known), nopen);
            atomic_store(&sh->phase, PH_READY);
            if (!wait_for(&ready, nopen, READY_DEADLINE_S))
                fprintf(stderr, "loadgen: only %ld of %ld subscribers got a first message\n",
                        atomic_load(&ready), nopen);
            nready_target = atomic_load(&ready);
            sleep_s(0.2);
        }
        atomic_store(&sh->phase, PH_WARMUP);
        sleep_s(opt.warmup);
        long p0 = atomic_load(&published);
        uint64_t m0 = now_ns();
        int marked = opt.window_cmd && strstr(opt.window_cmd, "LOADGEN_PID") != NULL;
        if (marked) { /* the command starts and ends the window itself */
            char pid[24];
            snprintf(pid, sizeof(pid), "%d", (int)getpid());
            setenv("LOADGEN_PID", pid, 1);
            struct sigaction sa;
            memset(&sa, 0, sizeof(sa));
            sa.sa_handler = on_window_mark;
            sa.sa_flags = SA_RESTART;
            sigemptyset(&sa.sa_mask);
            sigaction(SIGUSR1, &sa, NULL);
        } else {
            atomic_store(&sh->phase, PH_MEASURE);
        }
        if (opt.window_cmd) {
            int rc = system(opt.window_cmd);
            if (rc != 0)
                fprintf(stderr, "loadgen: -X command exited with %d\n", rc);
        } else {
            sleep_s(opt.duration);
        }
        atomic_store(&sh->phase, PH_DONE);
        uint64_t m1 = now_ns();
        if (marked) {
            int marks = atomic_load(&window_marks);
            if (marks == 0)
                fprintf(stderr, "loadgen: -X command marked no window\n");
            m0 = marks > 0 ? atomic_load(&window_mark_ns[0]) : m1;
            if (marks > 1)
                m1 = atomic_load(&window_mark_ns[1]);
        }
        measured = (double)(m1 - m0) / 1e9;
        atomic_store(&published, atomic_load(&published) - p0);
    }
    atomic_store(&sh->phase, PH_DONE);
    if (nkids > 0) {
        for (int i = 0; i < nkids; i++)
            waitpid(kids[i], NULL, 0);
        nt = 0;
    }
    for (int t = 0; t < nt + (pubthread != NULL); t++)
        pthread_join(threads[t].tid, NULL);

    struct hist *h = calloc(1, sizeof(*h));
    uint64_t msgs = 0, bytes = 0, errors = 0, missed = 0;
    for (int t = 0; t < nt; t++) {
        hist_merge(h, &threads[t].hist);
        msgs += threads[t].msgs;
        bytes += threads[t].bytes;
        errors += threads[t].errors;
        missed += threads[t].missed;
    }
    static const char *scn[] = {"rt", "fanout", "idle", "connect"};
    static const char *prn[] = {"length", "ws"};
    static const char *pubn[] = {"sendall", "chpub", "http", "api"};
    printf("RESULT label=%s scenario=%s proto=%s n=%ld k=%d s=%d threads=%d", opt.label,
           scn[opt.sc], prn[opt.proto], opt.n, opt.k, opt.size, opt.threads);
    if (opt.sc == SC_IDLE) {
        printf(" opened=%ld setup_s=%.2f", nopen, setup_s);
        fprintf(stderr, "%s: %ld connections open (%.1f s to connect)\n", opt.label, nopen,
                setup_s);
        for (int i = 0; i < opt.npidsets; i++) {
            double per = nopen > 0 ? (double)(rss_after[i] - rss_before[i]) * 1024.0 / (double)nopen : 0;
            printf(" rss_before_%s=%ld rss_after_%s=%ld bytes_per_conn_%s=%.0f",
                   opt.pidsets[i].label, rss_before[i], opt.pidsets[i].label, rss_after[i],
                   opt.pidsets[i].label, per);
            fprintf(stderr, "  %s: VmRSS %ld KiB -> %ld KiB: %.0f bytes per connection\n",
                    opt.pidsets[i].label, rss_before[i], rss_after[i], per);
        }
    } else {
        double rate = measured > 0 ? (double)msgs / measured : 0;
        printf(" duration=%.2f msgs=%llu rate=%.0f p50_us=%.1f p90_us=%.1f p99_us=%.1f "
               "p999_us=%.1f max_us=%.1f mean_us=%.1f errors=%llu lost_conns=%ld",
               measured, (unsigned long long)msgs, rate, hist_quantile(h, 0.5) / 1e3,
               hist_quantile(h, 0.9) / 1e3, hist_quantile(h, 0.99) / 1e3,
               hist_quantile(h, 0.999) / 1e3, (double)h->max / 1e3,
               h->count ? (double)h->sum / (double)h->count / 1e3 : 0,
               (unsigned long long)errors, atomic_load(&sh->closed_early));
        if (opt.sc == SC_RT && opt.rate > 0)
            printf(" target_rate=%.0f missed=%llu", opt.rate, (unsigned long long)missed);
        if (opt.sc == SC_FANOUT)
            printf(" pubmode=%s subscribers_ready=%ld publications=%ld pub_rate=%.0f window=%d",
                   pubn[opt.pubmode], nready_target, atomic_load(&published),
                   measured > 0 ? (double)atomic_load(&published) / measured : 0, opt.window);
        fprintf(stderr,
                "%s: %s %s n=%ld k=%d s=%d: %.0f %s/s, latency p50 %.1f us, p99 %.1f us, "
                "p99.9 %.1f us, max %.1f us; errors %llu\n",
                opt.label, scn[opt.sc], prn[opt.proto], opt.n, opt.k, opt.size, rate,
                opt.sc == SC_FANOUT ? "deliveries" : opt.sc == SC_CONNECT ? "handshakes" : "msgs",
                hist_quantile(h, 0.5) / 1e3, hist_quantile(h, 0.99) / 1e3,
                hist_quantile(h, 0.999) / 1e3, (double)h->max / 1e3,
                (unsigned long long)errors);
    }
    printf("\n");
    fflush(stdout);
    return 0;
}
