/* router.c - router mode (DESIGN §7, §8).
 *
 * Every TCP connection is an rconn. One that sends AUTH becomes a gateway link
 * (one per gateway worker); any other is a backend client, usually a PHP request
 * that connects, writes a few commands and closes without reading.
 *
 * State: the tables (sessions, channels, gateways, each link's own) live in
 * r->tab (rtable.c), which does no I/O; c->link is the connection's handle
 * there, freed by rtable_link_forget in router_link_forget only.
 * A link is forgotten the moment it dies (so INFO and fan-out never see it), but
 * the rconn and its conn are freed later by router_reap: a link can die in
 * the middle of a fan-out, or inside its own read callback.
 *
 * A command for several links is split into one message per link; the message
 * body (D) is moved out of the input once and shared by reference among the
 * links' output buffers, never copied per link. A link whose output passes
 * ROUTER_OUTPUT_LIMIT is dropped: it reconnects and resends its sessions, which
 * is cheaper than letting one stuck gateway grow the router without bound.
 *
 * Backend API v2 (DESIGN §13): the tables also keep each session's uid and
 * channel memberships, so SEND_UID / KICK_UID go only to the links holding the
 * uids, and most queries are answered from the tables. SESSION_GET and
 * CH_SESSIONS need the session data, which only the gateways hold: the router
 * sends GW_QUERY to the links concerned and answers when every GW_ANSWER is in
 * or the deadline passes (struct rgwq). Answers leave a connection in the
 * order its queries came: each connection keeps a FIFO of answers not yet
 * written (struct ranswer), and one waiting for gateways holds back the ones
 * behind it. */
#include "router.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "conn.h"
#include "hmap.h"
#include "log.h"
#include "loop.h"
#include "netaddr.h"
#include "bus.h"
#include "nbus.h"
#include "proc.h"
#include "rmsg.h"
#include "router_cmd.h"
#include "router_nats.h"
#include "router_metrics.h"
#include "rtable.h"

/* Largest D accepted. A message must fit in a link's output with room to spare,
 * or forwarding it would drop every link it goes to; so it is also capped at
 * half of ROUTER_OUTPUT_LIMIT. */
#define ROUTER_MAX_LEN (64u << 20)
/* How long a backend that closed its side may take to read its INFO reply. */
#define ROUTER_DRAIN_SECONDS 10
/* Pause before accepting again when out of file descriptors. */
#define ROUTER_ACCEPT_PAUSE_MS 100
/* With ROUTER_SECRET set, a connection must present it (AUTH or SECRET) within
 * this long: a peer we do not trust yet holds nothing but its socket, and not
 * for long. */
#define ROUTER_AUTH_SECONDS 5
/* The most an unauthenticated peer can make us buffer: one whole AUTH carrying
 * the longest secret (SECRET is shorter). It is the input's read limit until
 * the peer authenticates, so the socket is not read past it instead of
 * buffering what the peer announces. */
#define ROUTER_PREAUTH_INPUT (RMSG_HEADER_LEN + RMSG_AUTH_LEN + RMSG_MAX_SECRET)
/* Queries of one connection waiting for gateways at once; more are answered
 * ERROR. Each waits at most the deadline, so this bounds what one backend can
 * keep in flight (GW_QUERY messages, collected records). */
#define ROUTER_MAX_WAITING 1024
/* SIDs that queries waiting for gateways may have asked of them at once, over
 * all connections (16 bytes each in GW_QUERY): a CH_SESSIONS past it is
 * answered ERROR. */
#define ROUTER_GWQ_MAX_SIDS 1000000
/* A broadcast up to this size (header, S and D) is copied into each link's
 * output rather than shared by reference. */
#define ROUTER_COPY_MAX 512
/* GW_QUERY deadline when LINK_TIMEOUT is 0. */
#define ROUTER_GW_SECONDS 2

/* An answer to a query, in its connection's FIFO: buf is the whole message
 * once it is ready, NULL while it waits (for gateways, or a bus reply). */
struct ranswer {
    struct evbuffer *buf;
    STAILQ_ENTRY(ranswer) entry;
};
STAILQ_HEAD(ranswer_list, ranswer);

/* A query waiting for gateways (SESSION_GET, CH_SESSIONS). Owned by
 * r->gwqs; freed by router_gwq_free only: when it is answered, or when the
 * connection that asked dies. */
struct rgwq_link {
    struct rconn *l;
    unsigned due; /* GW_ANSWERs still due from it */
};
struct rgwq {
    struct router *r;
    struct rconn *c;                 /* the connection that asked */
    struct ranswer *a;               /* its place in c's FIFO */
    uint32_t id;                     /* GW_QUERY / GW_ANSWER id */
    uint16_t type;                   /* SESSION_GET or CH_SESSIONS */
    unsigned char sid[RMSG_SID_LEN]; /* SESSION_GET: the session */
    struct rgwq_link *links;
    size_t nlinks, cap;
    unsigned due;             /* GW_ANSWERs still due, from every link */
    size_t nsids;             /* SIDs asked of gateways (router.gwq_sids) */
    int over;                 /* the records passed ROUTER_ANSWER_MAX */
    struct evbuffer *records; /* SID | u32 len | data, as they came */
    struct event *deadline;   /* also made active when the last answer is in */
    TAILQ_ENTRY(rgwq) entry;
};

_Static_assert(RMSG_MAX_SECRET == CONFIG_MAX_SECRET, "AUTH/SECRET cap must fit ROUTER_SECRET");

struct rconn {
    struct router *r;
    struct conn *conn;
    char peer[64];               /* "addr:port", for log lines */
    unsigned authed : 1;         /* presented ROUTER_SECRET, or none is set */
    unsigned draining : 1;       /* peer closed its side; flushing our output, then free */
    unsigned dead : 1;           /* forgotten; router_reap frees it */
    unsigned touched : 1;        /* on the current fan-out's target list */
    unsigned ponged : 1;         /* link: answered a PING, so it is held to LINK_TIMEOUT */
    unsigned v2 : 1;             /* link: said HELLO, so it takes types 16..34 */
    unsigned v1_noted : 1;       /* link: "does not speak v2" logged once */
    unsigned drop : 3;           /* link: why it is killed (enum router_drop; 0: an error) */
    unsigned refused;            /* messages refused (router_conn_noted) */
    int waiting;                 /* bus replies still due to this connection (INFO) */
    struct event *auth_deadline; /* ROUTER_SECRET set and not presented yet */
    struct event *resume;        /* reads on after a query that waited for gateways */
    uint32_t server_id, worker_id;
    struct rtable_link *link; /* a gateway link (sent AUTH): its entry in r->tab */
    struct rconn *touch_next;
    struct ranswer_list answers; /* queries' answers not written yet, in order */
    size_t queued;               /* bytes of the ready ones among them */
    unsigned nwaiting;           /* its queries waiting for gateways */
    /* A local connection (router_local_new: the HTTP API's) has no conn:
     * each answer goes to on_answer instead of an output. */
    router_answer_fn *on_answer;
    void *answer_arg;
    TAILQ_ENTRY(rconn) entry; /* r->conns, or r->dead once killed */
};
TAILQ_HEAD(rconn_list, rconn);

struct router {
    const struct config *cfg;
    struct event_base *base;
    struct evconnlistener *listener;
    struct event *sig_int, *sig_term, *sig_usr1, *sig_hup, *reap, *accept_resume, *trim;
    struct event *sig_quit, *sig_usr2, *sig_chld;
    /* SIGUSR2: a binary upgrade under way (proc.h), its successor's pid, the
     * read end of its ready pipe, and the deadline for it. */
    pid_t up_pid;
    struct event *up_ready, *up_timer;
    int up_fd;
    int handed_over; /* the successor serves: this router goes */
    sigset_t sigs;   /* the signals handled, blocked until their handlers exist */
    char exe[4096], conf[4096];
    struct event *ping; /* LINK_TIMEOUT / 3: PING every gateway link */
    struct rconn_list conns, dead;
    struct rtable *tab;
    struct rtable_split split;      /* scratch of router_cmd_split */
    struct rtable_uid_split usplit; /* scratch of router_cmd_uids */
    TAILQ_HEAD(, rgwq) gwqs;        /* queries waiting for gateways */
    struct hmap *gwq_ids;           /* id -> struct rgwq */
    size_t gwq_sids;                /* SIDs asked of gateways by queries now waiting */
    struct evbuffer *payload;       /* the D of the message being handled (router_dispatch) */
    uint32_t next_qid;
    const struct timeval *gwq_tv; /* common timeout: the GW_QUERY deadline */
    size_t answer_max;            /* ROUTER_ANSWER_MAX (at most half the output limit) */
    size_t gwq_per_msg;           /* SIDs per GW_QUERY: its answer must fit max_len */
    int has_secret;
    unsigned char secret_md[EVP_MAX_MD_SIZE];
    unsigned int secret_mdlen;
    uint32_t max_len;
    size_t output_limit;                   /* 0: none */
    struct bus *bus;                       /* BUS set: stateless, commands are published to Redis */
    struct router_nats *nats;              /* ... or to NATS (BUS = "nats://...") */
    const struct router_cmd *cmds;         /* router_cmds, or router_bus_cmds with a bus */
    const struct timeval *auth_tv;         /* common timeout of ROUTER_AUTH_SECONDS */
    const struct router_service *http_svc; /* the JSON API's start and stop (main.c) */
    void *http;                            /* its state while it runs */
    struct router_counters ctr;            /* for /metrics (router_metrics.c) */
    unsigned char s[UINT16_MAX];           /* S of the message being handled */
};

struct router_counters *router_counters(struct router *r)
{
    return &r->ctr;
}

struct rtable *router_tables(struct router *r)
{
    return r->tab;
}

struct bus *router_bus(struct router *r)
{
    return r->bus;
}

int router_on_bus(const struct router *r)
{
    return r->bus != NULL || r->nats != NULL;
}

static uint32_t router_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int router_has_secret(const struct router *r)
{
    return r->has_secret;
}

/* Compares SHA-256 digests in constant time, so neither the secret's bytes nor
 * its length leak through timing. */
int router_secret_ok(const struct router *r, const void *p, size_t n)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (EVP_Digest(p, n, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != r->secret_mdlen)
        return 0;
    return CRYPTO_memcmp(md, r->secret_md, mdlen) == 0;
}

/* The peer presented ROUTER_SECRET: from now on it may send anything, of any
 * length up to the router's maximum. */
static void router_conn_trust(struct rconn *c)
{
    c->authed = 1;
    if (c->auth_deadline != NULL)
        event_del(c->auth_deadline);
    conn_set_read_limit(c->conn, 0);
}

/* Drops c if its pending output passed the limit. Returns 0 if c is still alive. */
static int router_check_output(struct rconn *c)
{
    size_t n;

    if (c->conn == NULL)
        return 0; /* local: its answers left at once */
    n = conn_output_length(c->conn);
    if (c->r->output_limit == 0 || n <= c->r->output_limit)
        return 0;
    c->drop = ROUTER_DROP_OUTPUT_LIMIT;
    if (c->link)
        log_err("router: %s: gateway %u/%u has %zu bytes unsent (ROUTER_OUTPUT_LIMIT %zu), "
                "dropping the link; it will reconnect and resync",
                c->peer, c->server_id, c->worker_id, n, c->r->output_limit);
    else
        log_err("router: %s: %zu bytes unsent (ROUTER_OUTPUT_LIMIT %zu), closing", c->peer, n,
                c->r->output_limit);
    router_conn_kill(c);
    return -1;
}

/* Forgets everything the link told us: its sessions, its channels, its place
 * among the gateways. The only cleanup path for a link's state. */
static void router_link_forget(struct rconn *l)
{
    rtable_link_forget(l->r->tab, l->link, NULL);
    l->link = NULL;
}

static void router_gwq_conn_gone(struct rconn *c);

/* Ends a connection: its state is forgotten now, its memory freed by router_reap
 * once the current callback has returned. */
void router_conn_kill(struct rconn *c)
{
    struct router *r = c->r;

    if (c->dead)
        return;
    c->dead = 1;
    router_gwq_conn_gone(c);
    if (c->link) {
        counter_add(&r->ctr.links_dropped[c->drop], 1);
        router_link_forget(c);
    }
    if (c->auth_deadline != NULL)
        event_del(c->auth_deadline);
    if (c->resume != NULL)
        event_del(c->resume);
    /* Nothing more is read or written: the output queued this turn would
     * otherwise still go out before router_reap closes the socket. */
    if (c->conn != NULL) {
        conn_read(c->conn, 0);
        conn_set_timeouts(c->conn, NULL, NULL);
        conn_setcb(c->conn, NULL, NULL, NULL, NULL);
        if (conn_output_length(c->conn) > 0)
            evbuffer_drain(conn_output(c->conn), conn_output_length(c->conn));
    }
    TAILQ_REMOVE(&r->conns, c, entry);
    TAILQ_INSERT_TAIL(&r->dead, c, entry);
    event_active(r->reap, 0, 0);
    if (c->on_answer != NULL) {
        /* A local connection the router dropped: its owner hears it once. */
        router_answer_fn *fn = c->on_answer;
        c->on_answer = NULL;
        fn(c->answer_arg, NULL);
    }
}

static void router_conn_free(struct rconn *c)
{
    struct ranswer *a;

    if (c->link)
        router_link_forget(c);
    while ((a = STAILQ_FIRST(&c->answers)) != NULL) {
        STAILQ_REMOVE_HEAD(&c->answers, entry);
        if (a->buf != NULL)
            evbuffer_free(a->buf);
        free(a);
    }
    if (c->conn != NULL)
        conn_free(c->conn);
    if (c->auth_deadline != NULL)
        event_free(c->auth_deadline);
    if (c->resume != NULL)
        event_free(c->resume);
    free(c);
}

static void router_reap(evutil_socket_t fd, short what, void *arg)
{
    struct router *r = arg;
    struct rconn *c;

    struct rconn *next;

    for (c = TAILQ_FIRST(&r->dead); c != NULL; c = next) {
        next = TAILQ_NEXT(c, entry);
        if (c->waiting > 0)
            continue; /* a bus reply still refers to it; freed when it comes */
        TAILQ_REMOVE(&r->dead, c, entry);
        router_conn_free(c);
    }
}

/* ---- what a command handler may do with its connection (router_cmd.h) ---- */

const char *router_conn_peer(const struct rconn *c)
{
    return c->peer;
}

struct bus *router_conn_bus(const struct rconn *c)
{
    return c->r->bus;
}

struct router_nats *router_conn_nats(const struct rconn *c)
{
    return c->r->nats;
}

int router_conn_bus_ready(const struct rconn *c)
{
    if (c->r->bus)
        return bus_cmd_ready(c->r->bus);
    if (c->r->nats)
        return router_nats_ready(c->r->nats);
    return -1;
}

int router_conn_send(struct rconn *c, uint16_t type, const void *d, size_t len)
{
    unsigned char hdr[RMSG_HEADER_LEN];
    struct evbuffer *out;

    if (c->conn == NULL)
        return router_conn_answer(c, type, d, len);
    out = conn_output(c->conn);
    rmsg_encode_header(hdr, type, 0, (uint32_t)len);
    if (evbuffer_add(out, hdr, sizeof(hdr)) < 0 || evbuffer_add(out, d, len) < 0) {
        log_err("router: %s: out of memory queuing %s, closing", c->peer, rmsg_type_name(type));
        router_conn_kill(c);
        return -1;
    }
    return router_check_output(c);
}

void router_conn_hold(struct rconn *c)
{
    c->waiting++;
}

int router_conn_release(struct rconn *c)
{
    c->waiting--;
    if (!c->dead)
        return 1;
    if (c->waiting == 0)
        event_active(c->r->reap, 0, 0);
    return 0;
}

/* ---- answers, in the order the queries came ---- */

/* Moves a whole answer (msg's bytes) out: into c's output, or for a local
 * connection to its owner, which may close it from inside. */
static int router_conn_deliver(struct rconn *c, struct evbuffer *msg)
{
    if (c->conn != NULL)
        return evbuffer_add_buffer(conn_output(c->conn), msg);
    if (c->on_answer != NULL)
        c->on_answer(c->answer_arg, msg);
    return evbuffer_drain(msg, evbuffer_get_length(msg));
}

/* Writes the ready answers at the head of c's FIFO. */
static void router_answers_flush(struct rconn *c)
{
    struct ranswer *a;
    int moved = 0;

    while (!c->dead && (a = STAILQ_FIRST(&c->answers)) != NULL && a->buf != NULL) {
        size_t n = evbuffer_get_length(a->buf);
        if (router_conn_deliver(c, a->buf) < 0) {
            log_err("router: %s: out of memory writing an answer, closing", c->peer);
            router_conn_kill(c);
            return;
        }
        c->queued -= n;
        STAILQ_REMOVE_HEAD(&c->answers, entry);
        evbuffer_free(a->buf);
        free(a);
        moved = 1;
    }
    if (moved)
        router_check_output(c);
}

/* The answers held back count towards ROUTER_OUTPUT_LIMIT like the output:
 * a backend that asks and never reads cannot grow the router without bound. */
static int router_answers_check(struct rconn *c)
{
    size_t n = (c->conn != NULL ? conn_output_length(c->conn) : 0) + c->queued;

    if (c->r->output_limit == 0 || n <= c->r->output_limit)
        return 0;
    log_err("router: %s: %zu bytes of answers unsent (ROUTER_OUTPUT_LIMIT %zu), closing", c->peer,
            n, c->r->output_limit);
    router_conn_kill(c);
    return -1;
}

struct ranswer *router_answer_reserve(struct rconn *c)
{
    struct ranswer *a = calloc(1, sizeof(*a));

    if (a == NULL) {
        log_err("router: %s: out of memory queuing an answer, closing", c->peer);
        router_conn_kill(c);
        return NULL;
    }
    STAILQ_INSERT_TAIL(&c->answers, a, entry);
    return a;
}

/* Takes msg's bytes (a whole message) as answer a, and writes what is ready. */
static void router_answer_set(struct rconn *c, struct ranswer *a, struct evbuffer *msg)
{
    if (c->dead)
        return;
    if ((a->buf = evbuffer_new()) == NULL || evbuffer_add_buffer(a->buf, msg) < 0) {
        log_err("router: %s: out of memory queuing an answer, closing", c->peer);
        router_conn_kill(c);
        return;
    }
    c->queued += evbuffer_get_length(a->buf);
    if (router_answers_check(c) == 0)
        router_answers_flush(c);
}

/* Queues the answer msg (header and D; its bytes are taken): straight into the
 * output when nothing is held back, else behind what is. */
static void router_answer_push(struct rconn *c, struct evbuffer *msg)
{
    struct ranswer *a;

    if (c->dead)
        return;
    if (STAILQ_EMPTY(&c->answers)) {
        if (router_conn_deliver(c, msg) < 0) {
            log_err("router: %s: out of memory writing an answer, closing", c->peer);
            router_conn_kill(c);
            return;
        }
        router_check_output(c);
        return;
    }
    if ((a = router_answer_reserve(c)) != NULL)
        router_answer_set(c, a, msg);
}

/* An answer with S empty and D = d[0..len), to slot a (or at the end if NULL). */
static void router_answer_bytes(struct rconn *c, struct ranswer *a, uint16_t type, const void *d,
                                size_t len)
{
    unsigned char hdr[RMSG_HEADER_LEN];
    struct evbuffer *msg = evbuffer_new();

    rmsg_encode_header(hdr, type, 0, (uint32_t)len);
    if (msg == NULL || evbuffer_add(msg, hdr, sizeof(hdr)) < 0
        || (len > 0 && evbuffer_add(msg, d, len) < 0)) {
        log_err("router: %s: out of memory answering %s, closing", c->peer, rmsg_type_name(type));
        if (msg != NULL)
            evbuffer_free(msg);
        router_conn_kill(c);
        return;
    }
    if (a != NULL)
        router_answer_set(c, a, msg);
    else
        router_answer_push(c, msg);
    evbuffer_free(msg);
}

void router_answer_fill(struct rconn *c, struct ranswer *a, uint16_t type, const void *d,
                        size_t len)
{
    router_answer_bytes(c, a, type, d, len);
}

int router_conn_answer(struct rconn *c, uint16_t type, const void *d, size_t len)
{
    router_answer_bytes(c, NULL, type, d, len);
    return c->dead ? -1 : 0;
}

/* A query refused: ERROR (its type, why), in its place among the answers. */
static void router_answer_error(struct rconn *c, struct ranswer *a, uint16_t type, const char *why)
{
    unsigned char msg[RMSG_ERROR_MSG_MAX];
    size_t n = rmsg_encode_error(msg, type, why);

    router_answer_bytes(c, a, RMSG_ERROR, msg + RMSG_HEADER_LEN, n - RMSG_HEADER_LEN);
}

/* Whether the n-th refusal on a connection is logged: the first ten, then
 * one in a thousand (with the count), so a peer cannot flood the log. */
static int router_conn_noted(struct rconn *c)
{
    c->refused++;
    return c->refused <= 10 || c->refused % 1000 == 0;
}

size_t router_conn_answer_max(const struct rconn *c)
{
    return c->r->answer_max;
}

void router_answer_refuse(struct rconn *c, struct ranswer *a, uint16_t type, const char *why)
{
    router_answer_error(c, a, type, why);
}

void router_conn_refuse(struct rconn *c, const struct rmsg *m, const char *why)
{
    if (rmsg_is_query(m->type)) {
        log_debug("router: %s: %s refused: %s", c->peer, rmsg_type_name(m->type), why);
        router_answer_error(c, NULL, m->type, why);
        return;
    }
    if (router_conn_noted(c))
        log_err("router: %s: %s (%u + %u bytes) refused: %s (%u refused on this connection)",
                c->peer, rmsg_type_name(m->type), m->slen, m->len, why, c->refused);
}

/* ---- fan-out ---- */

/* Queues header + S (+ D) on link l. D is a shared payload added by reference,
 * or NULL for bytes d (a channel name) that are small enough to copy. */
static int router_link_v2(struct rconn *l, uint16_t type)
{
    if (l->v2 || type < RMSG_BIND || type > RMSG_GW_ANSWER)
        return 1;
    if (!l->v1_noted) {
        l->v1_noted = 1;
        log_info("router: %s: gateway %u/%u has not said HELLO (a gateway from before v2): "
                 "%s and the other v2 messages are not sent to it",
                 l->peer, l->server_id, l->worker_id, rmsg_type_name(type));
    }
    return 0;
}

static void router_link_send(struct rconn *l, uint16_t type, const void *sp, size_t slen,
                             struct evbuffer *payload, const void *d, size_t dlen)
{
    struct evbuffer *out = conn_output(l->conn);
    unsigned char hdr[RMSG_HEADER_LEN];

    if (!router_link_v2(l, type))
        return; /* it would drop its link on a type it does not know */

    rmsg_encode_header(hdr, type, (uint16_t)slen, (uint32_t)dlen);
    if (evbuffer_add(out, hdr, sizeof(hdr)) < 0 || evbuffer_add(out, sp, slen) < 0
        || (payload != NULL ? evbuffer_add_buffer_reference(out, payload)
                            : evbuffer_add(out, d, dlen))
               < 0) {
        /* Half a message is in the stream now: the link cannot be trusted. */
        log_err("router: %s: gateway %u/%u: out of memory queuing %s, dropping the link", l->peer,
                l->server_id, l->worker_id, rmsg_type_name(type));
        router_conn_kill(l);
        return;
    }
    if (type != RMSG_PING && type != RMSG_GW_QUERY)
        counter_add(&l->r->ctr.deliveries, 1);
    router_check_output(l);
}

/* KICK, SEND_MSG, CH_ADD, CH_DEL: one message per link holding any of the SIDs,
 * carrying only that link's SIDs. SIDs of sessions nobody holds are dropped. */
static void router_cmd_ch_sub(struct rconn *c, const struct rmsg *m, struct evbuffer *payload);

static void router_cmd_split(struct rconn *c, const struct rmsg *m, struct evbuffer *payload)
{
    struct router *r = c->r;
    struct rtable_split *sp = &r->split;

    if (rtable_split(r->tab, m->s, m->slen / RMSG_SID_LEN, sp) < 0) {
        log_err("router: %s: out of memory splitting %s, not sent", c->peer,
                rmsg_type_name(m->type));
        return;
    }
    /* Sending may drop a link (output limit), which only forgets state: the
     * split is a copy, and the rconns stay valid until router_reap. Nothing
     * below splits again, so sp stays as it is. */
    for (size_t i = 0; i < sp->ngroups; i++) {
        struct rconn *l = sp->groups[i].owner;
        if (l->dead)
            continue;
        router_link_send(l, m->type, sp->groups[i].sids, sp->groups[i].n * RMSG_SID_LEN, payload,
                         m->d, m->len);
        if (m->type == RMSG_CH_ADD && !l->dead) {
            /* Subscribe the link now, not when its CH_SUB comes back: a CH_PUB
             * right behind this CH_ADD must reach the new member. (A gateway
             * where none of the SIDs joined answers CH_UNSUB.) */
            struct rmsg sub = {.type = RMSG_CH_SUB, .slen = (uint16_t)m->len, .s = m->d};
            router_cmd_ch_sub(l, &sub, NULL);
        }
    }
    log_debug("router: %s: %s %u SIDs, %u bytes -> %zu links", c->peer, rmsg_type_name(m->type),
              m->slen / RMSG_SID_LEN, m->len, sp->ngroups);
}

/* Sends the message to every link on the list, encoded once: each link's output
 * references the same evbuffer chains, so a broadcast to N links costs one copy
 * of the message, not N. Returns how many links it was queued on. */
static int router_broadcast(struct rconn *head, const struct rmsg *m, struct evbuffer *payload)
{
    unsigned char small[ROUTER_COPY_MAX];
    size_t total = RMSG_HEADER_LEN + (size_t)m->slen + evbuffer_get_length(payload);
    struct evbuffer *msg = NULL;
    struct rconn *l, *next;
    int ok, n = 0;

    /* A small message is copied into each link's output (it lands in the
     * block already there): no buffer, chain or reference of its own per
     * publication. A big one is encoded once and shared by reference. */
    rmsg_encode_header(small, m->type, m->slen, m->len);
    if (total <= sizeof(small)) {
        memcpy(small + RMSG_HEADER_LEN, m->s, m->slen);
        ok = evbuffer_remove(payload, small + RMSG_HEADER_LEN + m->slen, sizeof(small))
             == (int)(total - RMSG_HEADER_LEN - m->slen);
    } else {
        msg = evbuffer_new();
        ok = msg != NULL && evbuffer_add(msg, small, RMSG_HEADER_LEN) == 0
             && evbuffer_add(msg, m->s, m->slen) == 0 && evbuffer_add_buffer(msg, payload) == 0;
    }
    if (!ok)
        log_err("router: out of memory encoding %s, not sent", rmsg_type_name(m->type));
    for (l = head; l != NULL; l = next) {
        next = l->touch_next;
        l->touched = 0;
        if (!ok || l->dead || !router_link_v2(l, m->type))
            continue;
        if ((msg ? evbuffer_add_buffer_reference(conn_output(l->conn), msg)
                 : evbuffer_add(conn_output(l->conn), small, total))
            < 0) {
            log_err("router: %s: gateway %u/%u: out of memory queuing %s, dropping the link",
                    l->peer, l->server_id, l->worker_id, rmsg_type_name(m->type));
            router_conn_kill(l);
            continue;
        }
        router_check_output(l);
        n++;
    }
    if (msg != NULL)
        evbuffer_free(msg); /* the chains live on while any output references them */
    return n;
}

/* Puts link l (a struct rconn *) on the target list *head (struct rconn **). */
static void router_touch(void *link, void *head_arg)
{
    struct rconn *l = link, **head = head_arg;

    if (l->touched || l->dead)
        return;
    l->touched = 1;
    l->touch_next = *head;
    *head = l;
}

/* SEND_ALL: every link that holds at least one session. */
static void router_cmd_send_all(struct rconn *c, const struct rmsg *m, struct evbuffer *payload)
{
    struct rconn *head = NULL;
    int n;

    rtable_with_sessions_each(c->r->tab, router_touch, &head);
    n = router_broadcast(head, m, payload);
    counter_add(&c->r->ctr.deliveries, (uint64_t)n);
    log_debug("router: %s: %s %u bytes -> %d links", c->peer, rmsg_type_name(m->type), m->len, n);
}

/* CH_PUB: every link subscribed to the channel (S). */
static void router_cmd_ch_pub(struct rconn *c, const struct rmsg *m, struct evbuffer *payload)
{
    struct rconn *head = NULL;
    int n;

    rtable_channel_each(c->r->tab, m->s, m->slen, router_touch, &head);
    n = router_broadcast(head, m, payload);
    counter_add(&c->r->ctr.deliveries, (uint64_t)n);
    if (log_get_level() >= LOG_DEBUG) {
        char name[RMSG_ESCAPE_MAX];
        log_debug("router: %s: CH_PUB \"%s\" %u bytes -> %d links", c->peer,
                  rmsg_escape(m->s, m->slen, name, sizeof(name)), m->len, n);
    }
}

/* ---- commands from gateway links ---- */

static void router_cmd_auth(struct rconn *c, const struct rmsg *m, struct evbuffer *payload)
{
    struct router *r = c->r;
    uint32_t server = router_be32(m->d), worker = router_be32(m->d + 4);
    struct rconn *old;

    if (r->has_secret && !c->authed
        && !router_secret_ok(r, m->d + RMSG_AUTH_LEN, m->len - RMSG_AUTH_LEN)) {
        log_err("router: %s: AUTH (server %u, worker %u) with a wrong ROUTER_SECRET, closing",
                c->peer, server, worker);
        router_conn_kill(c);
        return;
    }
    if (!c->authed)
        router_conn_trust(c);
    /* A second AUTH on one connection starts over, like a reconnect. */
    if (c->link)
        router_link_forget(c);
    old = rtable_gateway(r->tab, server, worker);
    if (old != NULL) {
        /* The worker reconnected before we saw its old link die: the new link is
         * the truth, and it is about to resend its sessions. */
        log_info("router: %s: gateway %u/%u replaces its link from %s", c->peer, server, worker,
                 old->peer);
        old->drop = ROUTER_DROP_REPLACED;
        router_conn_kill(old);
    }
    c->server_id = server;
    c->worker_id = worker;
    if ((c->link = rtable_link_add(r->tab, c, server, worker)) == NULL) {
        log_err("router: %s: gateway %u/%u: out of memory, closing", c->peer, server, worker);
        router_conn_kill(c);
        return;
    }
    log_info("router: %s: gateway link, server %u worker %u", c->peer, server, worker);
    /* The v2 PING: a gateway that knows this token may send its reports
     * (BIND, UNBIND, CH_ADD, CH_DEL) from now on; any gateway answers PONG. */
    router_link_send(c, RMSG_PING, NULL, 0, NULL, RMSG_V2_TOKEN, sizeof(RMSG_V2_TOKEN) - 1);
}

static int router_need_link(struct rconn *c, const struct rmsg *m)
{
    if (c->link)
        return 1;
    log_debug("router: %s: %s from a connection that sent no AUTH, ignored", c->peer,
              rmsg_type_name(m->type));
    return 0;
}

static void router_cmd_conn(struct rconn *c, const struct rmsg *m, struct evbuffer *payload)
{
    if (!router_need_link(c, m))
        return;
    if (rtable_sessions_add(c->r->tab, c->link, m->s, m->slen / RMSG_SID_LEN) < 0) {
        /* A link whose sessions we cannot record would silently miss commands;
         * dropping it makes the gateway reconnect and resend them. */
        log_err("router: %s: gateway %u/%u: out of memory recording sessions, dropping the link",
                c->peer, c->server_id, c->worker_id);
        router_conn_kill(c);
        return;
    }
    log_debug("router: %s: CONN %u SIDs, gateway %u/%u now holds %zu", c->peer,
              m->slen / RMSG_SID_LEN, c->server_id, c->worker_id, rtable_link_sessions(c->link));
}

static void router_cmd_close(struct rconn *c, const struct rmsg *m, struct evbuffer *payload)
{
    if (!router_need_link(c, m))
        return;
    rtable_sessions_remove(c->r->tab, c->link, m->s, m->slen / RMSG_SID_LEN);
    log_debug("router: %s: CLOSE %u SIDs, gateway %u/%u now holds %zu", c->peer,
              m->slen / RMSG_SID_LEN, c->server_id, c->worker_id, rtable_link_sessions(c->link));
}

static void router_cmd_ch_sub(struct rconn *c, const struct rmsg *m, struct evbuffer *payload)
{
    size_t nlinks;
    int rc;

    if (!router_need_link(c, m))
        return;
    if ((rc = rtable_subscribe(c->r->tab, c->link, m->s, m->slen, &nlinks)) < 0) {
        log_err("router: %s: gateway %u/%u: out of memory recording a channel, dropping the link",
                c->peer, c->server_id, c->worker_id);
        router_conn_kill(c);
        return;
    }
    if (rc > 0 && log_get_level() >= LOG_DEBUG) {
        char name[RMSG_ESCAPE_MAX];
        log_debug("router: %s: CH_SUB \"%s\", %zu links subscribed", c->peer,
                  rmsg_escape(m->s, m->slen, name, sizeof(name)), nlinks);
    }
}

static void router_cmd_ch_unsub(struct rconn *c, const struct rmsg *m, struct evbuffer *payload)
{
    if (!router_need_link(c, m) || !rtable_unsubscribe(c->r->tab, c->link, m->s, m->slen, NULL))
        return;
    if (log_get_level() >= LOG_DEBUG) {
        char name[RMSG_ESCAPE_MAX];
        log_debug("router: %s: CH_UNSUB \"%s\"", c->peer,
                  rmsg_escape(m->s, m->slen, name, sizeof(name)));
    }
}

/* ---- commands from backends ---- */

void router_cmd_secret(struct rconn *c, const struct rmsg *m, struct evbuffer *payload)
{
    struct router *r = c->r;

    if (!r->has_secret || c->authed)
        return;
    if (!router_secret_ok(r, m->d, m->len)) {
        log_err("router: %s: wrong ROUTER_SECRET, closing", c->peer);
        router_conn_kill(c);
        return;
    }
    router_conn_trust(c);
    log_debug("router: %s: secret accepted", c->peer);
}

static void router_cmd_info(struct rconn *c, const struct rmsg *m, struct evbuffer *payload)
{
    struct router *r = c->r;
    struct evbuffer *text = evbuffer_new();
    unsigned char hdr[RMSG_HEADER_LEN];
    struct rtable_totals tot;
    struct rtable_link *l;
    int ok;

    rtable_totals(r->tab, &tot);
    ok = text != NULL
         && evbuffer_add_printf(text, "clients: %zu\r\nchannels: %zu\r\nuids: %zu\r\n",
                                tot.sessions, tot.channels, tot.uids)
                >= 0;
    for (l = rtable_links_first(r->tab); ok && l != NULL; l = rtable_links_next(l)) {
        ok = evbuffer_add_printf(text, "gateway: %u\t%u\t%zu\t%zu\r\n", rtable_link_server_id(l),
                                 rtable_link_worker_id(l), rtable_link_sessions(l),
                                 rtable_link_channels(l))
             >= 0;
    }
    if (ok) {
        rmsg_encode_header(hdr, RMSG_INFO, 0, (uint32_t)evbuffer_get_length(text));
        ok = evbuffer_prepend(text, hdr, sizeof(hdr)) == 0;
    }
    if (!ok) {
        if (text != NULL)
            evbuffer_free(text);
        log_err("router: %s: out of memory answering INFO, closing", c->peer);
        router_conn_kill(c);
        return;
    }
    router_answer_push(c, text);
    evbuffer_free(text);
    log_debug("router: %s: INFO", c->peer);
}

/* PING from anyone: answered, so a backend can check the router too. */
void router_cmd_ping(struct rconn *c, const struct rmsg *m, struct evbuffer *payload)
{
    router_conn_answer(c, RMSG_PONG, NULL, 0);
}

/* A link that answers PING is a gateway that knows LINK_TIMEOUT: from now on
 * silence for that long means it is gone (a half-open connection, a stuck
 * proxy), and the link is dropped. An old gateway never answers and is never
 * held to it. */
void router_cmd_pong(struct rconn *c, const struct rmsg *m, struct evbuffer *payload)
{
    struct timeval tv = {c->r->cfg->link_timeout, 0};

    if (!c->link || c->ponged || c->r->cfg->link_timeout <= 0)
        return;
    c->ponged = 1;
    conn_set_timeouts(c->conn, &tv, NULL);
    log_debug("router: %s: gateway %u/%u answers PING, held to LINK_TIMEOUT %d s", c->peer,
              c->server_id, c->worker_id, c->r->cfg->link_timeout);
}

static void router_ping_links(evutil_socket_t fd, short what, void *arg)
{
    struct router *r = arg;
    unsigned char hdr[RMSG_HEADER_LEN];
    struct rtable_link *tl, *next;

    rmsg_encode_header(hdr, RMSG_PING, 0, 0);
    /* Sending can drop a link (output limit), which forgets it: take next first. */
    for (tl = rtable_links_first(r->tab); tl != NULL; tl = next) {
        struct rconn *l = rtable_link_owner(tl);
        next = rtable_links_next(tl);
        if (evbuffer_add(conn_output(l->conn), hdr, sizeof(hdr)) < 0) {
            log_err("router: %s: gateway %u/%u: out of memory queuing PING, dropping the link",
                    l->peer, l->server_id, l->worker_id);
            router_conn_kill(l);
            continue;
        }
        router_check_output(l);
    }
}

/* ---- backend API v2: commands ---- */

/* BIND / UNBIND from a backend: the index first (a query right behind sees
 * it), then forwarded split by link. From a gateway link: its report, applied
 * to the sessions it holds, never forwarded. */
static void router_cmd_bind(struct rconn *c, const struct rmsg *m, struct evbuffer *payload)
{
    struct router *r = c->r;
    size_t n = m->slen / RMSG_SID_LEN, applied = 0;
    int rc = 0;

    if (m->type == RMSG_BIND)
        rc = rtable_bind(r->tab, c->link, m->s, n, m->d, m->len, &applied);
    else
        applied = rtable_unbind(r->tab, c->link, m->s, n);
    if (rc < 0)
        log_err("router: %s: out of memory recording %s (%zu of %zu SIDs recorded)", c->peer,
                rmsg_type_name(m->type), applied, n);
    if (c->link) {
        if (applied < n && m->type == RMSG_BIND)
            log_debug("router: %s: gateway %u/%u reports BIND of %zu SIDs it does not hold, "
                      "ignored",
                      c->peer, c->server_id, c->worker_id, n - applied);
        return;
    }
    router_cmd_split(c, m, payload);
}

/* CH_ADD / CH_DEL: as before, and the membership is kept; from a gateway
 * link, a report only. */
static void router_cmd_member(struct rconn *c, const struct rmsg *m, struct evbuffer *payload)
{
    struct router *r = c->r;
    size_t n = m->slen / RMSG_SID_LEN, applied = 0;

    if (m->type == RMSG_CH_ADD) {
        if (rtable_join(r->tab, c->link, m->s, n, m->d, m->len, &applied) < 0)
            log_err("router: %s: out of memory recording CH_ADD members (%zu of %zu)", c->peer,
                    applied, n);
    } else {
        applied = rtable_leave(r->tab, c->link, m->s, n, m->d, m->len);
    }
    if (c->link) {
        if (applied < n && m->type == RMSG_CH_ADD)
            log_debug("router: %s: gateway %u/%u reports CH_ADD of %zu SIDs it does not hold, "
                      "ignored",
                      c->peer, c->server_id, c->worker_id, n - applied);
        return;
    }
    router_cmd_split(c, m, payload);
}

/* SEND_UID / KICK_UID: once to each link holding sessions of the listed uids,
 * with S cut down to the uids that link holds. */
static void router_cmd_uids(struct rconn *c, const struct rmsg *m, struct evbuffer *payload)
{
    struct router *r = c->r;
    struct rtable_uid_split *sp = &r->usplit;

    if (rtable_uid_split(r->tab, m->s, m->slen, sp) < 0) {
        log_err("router: %s: out of memory splitting %s, not sent", c->peer,
                rmsg_type_name(m->type));
        return;
    }
    for (size_t i = 0; i < sp->ngroups; i++) {
        struct rconn *l = sp->groups[i].owner;
        if (!l->dead)
            router_link_send(l, m->type, sp->groups[i].list, sp->groups[i].len, payload, NULL,
                             payload != NULL ? m->len : 0);
    }
    log_debug("router: %s: %s %u bytes of uids -> %zu links (%zu uids held by none)", c->peer,
              rmsg_type_name(m->type), m->slen, sp->ngroups, sp->unknown);
}

/* SESSION_SET: to the link holding the session; the router keeps no data. */
static void router_cmd_session_set(struct rconn *c, const struct rmsg *m, struct evbuffer *payload)
{
    struct rconn *l = rtable_session_owner(c->r->tab, m->s);

    if (l == NULL || l->dead) {
        log_debug("router: %s: SESSION_SET for a session nobody holds, dropped", c->peer);
        return;
    }
    router_link_send(l, m->type, m->s, m->slen, payload, NULL, m->len);
}

/* CH_PUB_EX: like CH_PUB, to the links subscribed to its channel. */
static void router_cmd_ch_pub_ex(struct rconn *c, const struct rmsg *m, struct evbuffer *payload)
{
    struct rconn *head = NULL;
    struct rmsg_ch_ex ex;

    if (rmsg_ch_ex_parse(m->s, m->slen, &ex) != RMSG_OK)
        return; /* validated before: cannot happen */
    rtable_channel_each(c->r->tab, ex.channel, ex.chlen, router_touch, &head);
    router_broadcast(head, m, payload);
}

/* HELLO: the gateway link speaks v2 (it saw the v2 PING). */
static void router_cmd_hello(struct rconn *c, const struct rmsg *m, struct evbuffer *payload)
{
    if (!c->link) {
        if (router_conn_noted(c))
            log_err("router: %s: HELLO from a backend, ignored", c->peer);
        return;
    }
    if (rmsg_get_u32(m->d) >= RMSG_VERSION && !c->v2) {
        /* What backends bound or joined for its sessions before now was not
         * sent to it (it had not said HELLO): its reports, right behind,
         * are the truth. */
        rtable_link_clear(c->r->tab, c->link);
        c->v2 = 1;
        log_debug("router: %s: gateway %u/%u speaks v%u", c->peer, c->server_id, c->worker_id,
                  rmsg_get_u32(m->d));
    }
}

/* Types a peer has no business sending here (ERROR, GW_QUERY; GW_ANSWER off a
 * gateway link): logged, nothing else. */
static void router_cmd_unexpected(struct rconn *c, const struct rmsg *m, struct evbuffer *payload)
{
    if (router_conn_noted(c))
        log_err("router: %s: %s is not for the router to receive%s, ignored", c->peer,
                rmsg_type_name(m->type), m->type == RMSG_GW_ANSWER ? " from a backend" : "");
}

/* ---- backend API v2: queries answered from the tables ---- */

static void router_query_is_online(struct rconn *c, const struct rmsg *m, struct evbuffer *payload)
{
    unsigned char d[RMSG_MAX_SIDS];
    size_t n = m->slen / RMSG_SID_LEN;

    for (size_t i = 0; i < n; i++)
        d[i] = rtable_session_owner(c->r->tab, m->s + i * RMSG_SID_LEN) != NULL;
    router_conn_answer(c, m->type, d, n);
}

static void router_query_count(struct rconn *c, const struct rmsg *m, struct evbuffer *payload)
{
    size_t n = m->type == RMSG_UID_COUNT ? rtable_uid_sessions(c->r->tab, m->s, m->slen)
                                         : rtable_members(c->r->tab, m->s, m->slen);
    unsigned char d[4];

    rmsg_put_u32(d, n > UINT32_MAX ? UINT32_MAX : (uint32_t)n);
    router_conn_answer(c, m->type, d, sizeof(d));
}

static void router_query_sid_uid(struct rconn *c, const struct rmsg *m, struct evbuffer *payload)
{
    size_t len = 0;
    const unsigned char *uid = rtable_session_uid(c->r->tab, m->s, &len);

    router_conn_answer(c, m->type, uid, uid != NULL ? len : 0);
}

/* An answer built record by record, bounded by ROUTER_ANSWER_MAX. */
struct router_build {
    struct evbuffer *d;
    size_t max;
    int failed; /* out of memory, or over max */
};

static void router_build_add(struct router_build *b, const void *p, size_t n)
{
    if (b->failed)
        return;
    if (evbuffer_get_length(b->d) + n > b->max || evbuffer_add(b->d, p, n) < 0)
        b->failed = 1;
}

/* Sends what was built as the answer, or ERROR when it did not fit. */
static void router_build_answer(struct rconn *c, struct ranswer *a, uint16_t type,
                                struct router_build *b)
{
    unsigned char hdr[RMSG_HEADER_LEN];

    if (b->failed) {
        log_info("router: %s: %s answer over ROUTER_ANSWER_MAX (%zu bytes), answered ERROR",
                 c->peer, rmsg_type_name(type), b->max);
        router_answer_error(c, a, type, "answer over ROUTER_ANSWER_MAX");
        return;
    }
    rmsg_encode_header(hdr, type, 0, (uint32_t)evbuffer_get_length(b->d));
    if (evbuffer_prepend(b->d, hdr, sizeof(hdr)) < 0) {
        log_err("router: %s: out of memory answering %s, closing", c->peer, rmsg_type_name(type));
        router_conn_kill(c);
        return;
    }
    if (a != NULL)
        router_answer_set(c, a, b->d);
    else
        router_answer_push(c, b->d);
}

static int router_build_start(struct rconn *c, struct router_build *b, uint16_t type, size_t expect)
{
    b->max = c->r->answer_max;
    b->failed = 0;
    if (expect > b->max) {
        log_info("router: %s: %s answer would be %zu bytes, over ROUTER_ANSWER_MAX (%zu), "
                 "answered ERROR",
                 c->peer, rmsg_type_name(type), expect, b->max);
        router_answer_error(c, NULL, type, "answer over ROUTER_ANSWER_MAX");
        return -1;
    }
    if ((b->d = evbuffer_new()) == NULL) {
        log_err("router: %s: out of memory answering %s, closing", c->peer, rmsg_type_name(type));
        router_conn_kill(c);
        return -1;
    }
    return 0;
}

static void router_build_sid(const unsigned char *sid, void *owner, void *arg)
{
    router_build_add(arg, sid, RMSG_SID_LEN);
}

static void router_query_uid_sids(struct rconn *c, const struct rmsg *m, struct evbuffer *payload)
{
    struct router_build b;
    size_t n = rtable_uid_sessions(c->r->tab, m->s, m->slen);

    if (router_build_start(c, &b, m->type, n * RMSG_SID_LEN) < 0)
        return;
    rtable_uid_each(c->r->tab, m->s, m->slen, router_build_sid, &b);
    router_build_answer(c, NULL, m->type, &b);
    evbuffer_free(b.d);
}

static void router_build_member(const unsigned char *sid, void *owner, const unsigned char *uid,
                                size_t uidlen, void *arg)
{
    unsigned char rec[RMSG_MEMBER_MAX];

    router_build_add(arg, rec, rmsg_encode_member(rec, sid, uid, uidlen));
}

static void router_query_ch_members(struct rconn *c, const struct rmsg *m, struct evbuffer *payload)
{
    struct router_build b;
    size_t n = rtable_members(c->r->tab, m->s, m->slen);

    if (router_build_start(c, &b, m->type, n * (RMSG_SID_LEN + 1)) < 0)
        return;
    rtable_members_each(c->r->tab, m->s, m->slen, router_build_member, &b);
    router_build_answer(c, NULL, m->type, &b);
    evbuffer_free(b.d);
}

static void router_build_channel(const unsigned char *name, size_t len, size_t members, void *arg)
{
    unsigned char rec[RMSG_CHANNEL_REC_MAX];

    router_build_add(arg, rec,
                     rmsg_encode_channel_count(
                         rec, name, len, members > UINT32_MAX ? UINT32_MAX : (uint32_t)members));
}

static void router_query_channels(struct rconn *c, const struct rmsg *m, struct evbuffer *payload)
{
    struct router_build b;

    if (router_build_start(c, &b, m->type, rtable_member_channels(c->r->tab) * 6) < 0)
        return;
    rtable_member_channels_each(c->r->tab, router_build_channel, &b);
    router_build_answer(c, NULL, m->type, &b);
    evbuffer_free(b.d);
}

/* ---- backend API v2: queries that wait for gateways ---- */

static void router_gwq_free(struct rgwq *q)
{
    struct router *r = q->r;
    unsigned char key[4];

    rmsg_put_u32(key, q->id);
    hmap_del(r->gwq_ids, key, sizeof(key), NULL);
    TAILQ_REMOVE(&r->gwqs, q, entry);
    if (q->deadline != NULL)
        event_free(q->deadline);
    if (q->records != NULL)
        evbuffer_free(q->records);
    free(q->links);
    r->gwq_sids -= q->nsids;
    if (q->c != NULL && --q->c->nwaiting == 0 && !q->c->dead && q->c->conn != NULL) {
        conn_read(q->c->conn, 1);
        event_active(q->c->resume, EV_TIMEOUT, 0); /* what it sent meanwhile */
    }
    free(q);
}

/* Every answer is in, or the deadline passed: the backend gets its answer,
 * without the SIDs of links that did not answer. */
static void router_gwq_finish(evutil_socket_t fd, short what, void *arg)
{
    struct rgwq *q = arg;
    struct rconn *c = q->c;
    struct ranswer *a = q->a;
    uint16_t type = q->type;
    struct router_build b = {q->records, c->r->answer_max, q->over};

    for (size_t i = 0; i < q->nlinks; i++) {
        if (q->links[i].due > 0)
            log_err("router: %s: %s: gateway %u/%u did not answer GW_QUERY within the deadline; "
                    "its sessions are left out of the answer",
                    c->peer, rmsg_type_name(q->type), q->links[i].l->server_id,
                    q->links[i].l->worker_id);
    }
    if (type == RMSG_SESSION_GET) {
        /* u8 found | data: the record of the session, if its link sent one. */
        unsigned char found = evbuffer_get_length(b.d) >= RMSG_RECORD_HEAD;
        if (found)
            evbuffer_drain(b.d, RMSG_RECORD_HEAD);
        if (evbuffer_prepend(b.d, &found, 1) < 0)
            b.failed = 1;
    }
    /* q goes first: answering can drop c, which would free q under us. The
     * slot a stays c's until c is freed. */
    q->records = NULL;
    router_gwq_free(q);
    router_build_answer(c, a, type, &b);
    evbuffer_free(b.d);
}

/* A link or a backend is going: its part in waiting queries goes with it. A
 * query whose last due link went is finished from the loop, never from here
 * (this runs in the middle of whatever killed the link). */
static void router_gwq_conn_gone(struct rconn *c)
{
    struct router *r = c->r;
    struct rgwq *q, *next;

    for (q = TAILQ_FIRST(&r->gwqs); q != NULL; q = next) {
        next = TAILQ_NEXT(q, entry);
        if (q->c == c) {
            router_gwq_free(q); /* nobody to answer */
            continue;
        }
        for (size_t i = 0; i < q->nlinks; i++) {
            if (q->links[i].l != c || q->links[i].due == 0)
                continue;
            log_info("router: %s: gateway %u/%u went before answering GW_QUERY %u; its "
                     "sessions are left out",
                     c->peer, c->server_id, c->worker_id, q->id);
            q->due -= q->links[i].due;
            q->links[i].due = 0;
            if (q->due == 0)
                event_active(q->deadline, EV_TIMEOUT, 0);
        }
    }
}

/* A query waiting for gateways, in c's FIFO. NULL (answered ERROR, or c
 * dropped) when it cannot be made. */
static void router_conn_read(struct conn *conn, void *arg);

/* The query that held c is answered: what c sent meanwhile is in its input. */
static void router_conn_resume(evutil_socket_t fd, short what, void *arg)
{
    struct rconn *c = arg;

    if (!c->dead)
        router_conn_read(c->conn, c);
}

static struct rgwq *router_gwq_new(struct rconn *c, uint16_t type)
{
    struct router *r = c->r;
    struct rgwq *q;
    unsigned char key[4];

    if (c->conn != NULL && c->resume == NULL
        && (c->resume = event_new(r->base, -1, 0, router_conn_resume, c)) == NULL)
        goto fail;
    if (c->nwaiting >= ROUTER_MAX_WAITING) {
        log_info("router: %s: %u queries already wait for gateways, %s answered ERROR", c->peer,
                 c->nwaiting, rmsg_type_name(type));
        router_answer_error(c, NULL, type, "too many queries waiting for gateways");
        return NULL;
    }
    if ((q = calloc(1, sizeof(*q))) == NULL)
        goto fail;
    q->r = r;
    q->type = type;
    q->records = evbuffer_new();
    q->deadline = evtimer_new(r->base, router_gwq_finish, q);
    /* Ids wrap; one still waiting (for its deadline at most) is skipped. */
    for (;;) {
        q->id = ++r->next_qid;
        rmsg_put_u32(key, q->id);
        if (q->id != 0 && !hmap_has(r->gwq_ids, key, sizeof(key)))
            break;
    }
    if (q->records == NULL || q->deadline == NULL
        || hmap_put(r->gwq_ids, key, sizeof(key), q, NULL) < 0) {
        if (q->records != NULL)
            evbuffer_free(q->records);
        if (q->deadline != NULL)
            event_free(q->deadline);
        free(q);
        goto fail;
    }
    TAILQ_INSERT_TAIL(&r->gwqs, q, entry);
    if ((q->a = router_answer_reserve(c)) == NULL) {
        router_gwq_free(q);
        return NULL;
    }
    q->c = c;
    c->nwaiting++;
    if (c->conn != NULL) /* a local connection runs nothing behind it meanwhile */
        conn_read(c->conn, 0);
    evtimer_add(q->deadline, r->gwq_tv);
    return q;
fail:
    log_err("router: %s: out of memory for %s, closing", c->peer, rmsg_type_name(type));
    router_conn_kill(c);
    return NULL;
}

/* GW_QUERY for n of link l's SIDs, in messages whose answers fit max_len. */
static void router_gwq_ask(struct rgwq *q, struct rconn *l, const unsigned char *sids, size_t n)
{
    unsigned char id[4];
    struct rgwq_link *e;

    if (l->dead || !router_link_v2(l, RMSG_GW_QUERY))
        return; /* a gateway from before v2: its sessions are left out */
    if (q->nlinks == q->cap) {
        size_t cap = q->cap ? 2 * q->cap : 4;
        struct rgwq_link *v = realloc(q->links, cap * sizeof(*v));
        if (v == NULL) {
            log_err("router: out of memory asking gateway %u/%u, its sessions are left out",
                    l->server_id, l->worker_id);
            return;
        }
        q->links = v;
        q->cap = cap;
    }
    e = &q->links[q->nlinks++];
    *e = (struct rgwq_link){l, 0};
    q->nsids += n;
    q->r->gwq_sids += n;
    rmsg_put_u32(id, q->id);
    for (size_t off = 0; off < n && !l->dead; off += q->r->gwq_per_msg) {
        size_t k = n - off < q->r->gwq_per_msg ? n - off : q->r->gwq_per_msg;
        /* Due before it is sent: sending can drop the link, which takes it back. */
        q->links[q->nlinks - 1].due++;
        q->due++;
        router_link_send(l, RMSG_GW_QUERY, sids + off * RMSG_SID_LEN, k * RMSG_SID_LEN, NULL, id,
                         sizeof(id));
    }
}

/* Nothing is due any more (no link, or every one dropped while asked): the
 * answer is made from the loop, like any other. */
static void router_gwq_asked(struct rgwq *q)
{
    if (q->due == 0)
        event_active(q->deadline, EV_TIMEOUT, 0);
}

static void router_query_session_get(struct rconn *c, const struct rmsg *m,
                                     struct evbuffer *payload)
{
    struct rconn *l = rtable_session_owner(c->r->tab, m->s);
    struct rgwq *q;

    if (l == NULL || l->dead) {
        static const unsigned char none = 0;
        router_conn_answer(c, m->type, &none, 1);
        return;
    }
    if ((q = router_gwq_new(c, m->type)) == NULL)
        return;
    memcpy(q->sid, m->s, RMSG_SID_LEN);
    router_gwq_ask(q, l, m->s, 1);
    router_gwq_asked(q);
}

static void router_collect_sid(const unsigned char *sid, void *owner, const unsigned char *uid,
                               size_t uidlen, void *arg)
{
    struct evbuffer *buf = arg;

    evbuffer_add(buf, sid, RMSG_SID_LEN);
}

static void router_query_ch_sessions(struct rconn *c, const struct rmsg *m,
                                     struct evbuffer *payload)
{
    struct router *r = c->r;
    size_t n = rtable_members(r->tab, m->s, m->slen);
    struct evbuffer *sids;
    struct rgwq *q;
    unsigned char *p;

    if (n == 0) {
        router_conn_answer(c, m->type, NULL, 0);
        return;
    }
    if (r->gwq_sids + n > ROUTER_GWQ_MAX_SIDS) {
        log_info("router: %s: CH_SESSIONS of %zu members while %zu sessions are being asked of "
                 "gateways already: answered ERROR",
                 c->peer, n, r->gwq_sids);
        router_answer_error(c, NULL, m->type, "too many sessions being asked of gateways now");
        return;
    }
    if ((sids = evbuffer_new()) == NULL)
        goto oom;
    rtable_members_each(r->tab, m->s, m->slen, router_collect_sid, sids);
    if (evbuffer_get_length(sids) != n * RMSG_SID_LEN || (p = evbuffer_pullup(sids, -1)) == NULL
        || rtable_split(r->tab, p, n, &r->split) < 0) {
        evbuffer_free(sids);
        goto oom;
    }
    if ((q = router_gwq_new(c, m->type)) != NULL) {
        for (size_t i = 0; i < r->split.ngroups; i++)
            router_gwq_ask(q, r->split.groups[i].owner, r->split.groups[i].sids,
                           r->split.groups[i].n);
        router_gwq_asked(q);
    }
    evbuffer_free(sids);
    return;
oom:
    log_err("router: %s: out of memory for CH_SESSIONS, closing", c->peer);
    router_conn_kill(c);
}

/* GW_ANSWER from a gateway link: records of the sessions it holds go into
 * the query's answer; a late one (the query is gone) is dropped. */
static void router_cmd_gw_answer(struct rconn *c, const struct rmsg *m, struct evbuffer *payload)
{
    struct router *r = c->r;
    struct rgwq *q;
    struct rgwq_link *e = NULL;
    const unsigned char *sid, *data;
    uint32_t len;
    size_t off = 0;

    if (!c->link) {
        router_cmd_unexpected(c, m, payload);
        return;
    }
    if ((q = hmap_get(r->gwq_ids, m->d, RMSG_QID_LEN)) != NULL) {
        for (size_t i = 0; i < q->nlinks && e == NULL; i++)
            if (q->links[i].l == c && q->links[i].due > 0)
                e = &q->links[i];
    }
    if (e == NULL) {
        log_debug("router: %s: GW_ANSWER %u after its deadline or not asked for, dropped", c->peer,
                  rmsg_get_u32(m->d));
        return;
    }
    while (rmsg_records_next(m->d + RMSG_QID_LEN, m->len - RMSG_QID_LEN, &off, &sid, &data, &len)
           == 1) {
        size_t have = evbuffer_get_length(q->records);
        if (rtable_session_owner(r->tab, sid) != c)
            continue; /* not this link's: not its word to give */
        if (q->type == RMSG_SESSION_GET && (memcmp(sid, q->sid, RMSG_SID_LEN) != 0 || have > 0))
            continue;
        if (q->over || have + RMSG_RECORD_HEAD + len > r->answer_max) {
            q->over = 1;
            continue;
        }
        if (evbuffer_add(q->records, sid, RMSG_RECORD_HEAD) < 0
            || evbuffer_add(q->records, data, len) < 0)
            q->over = 1; /* out of memory: answered ERROR, like too big */
    }
    e->due--;
    if (--q->due == 0)
        event_active(q->deadline, EV_TIMEOUT, 0);
}

static const struct router_cmd router_cmds[RMSG_TYPE_MAX + 1] = {
    [RMSG_AUTH] = {router_cmd_auth, ROUTER_D_BYTES},
    [RMSG_CONN] = {router_cmd_conn, ROUTER_D_SKIP},
    [RMSG_CLOSE] = {router_cmd_close, ROUTER_D_SKIP},
    [RMSG_KICK] = {router_cmd_split, ROUTER_D_SKIP},
    [RMSG_SEND_MSG] = {router_cmd_split, ROUTER_D_PAYLOAD},
    [RMSG_SEND_ALL] = {router_cmd_send_all, ROUTER_D_PAYLOAD},
    [RMSG_CH_ADD] = {router_cmd_member, ROUTER_D_BYTES},
    [RMSG_CH_DEL] = {router_cmd_member, ROUTER_D_BYTES},
    [RMSG_CH_PUB] = {router_cmd_ch_pub, ROUTER_D_PAYLOAD},
    [RMSG_CH_SUB] = {router_cmd_ch_sub, ROUTER_D_SKIP},
    [RMSG_CH_UNSUB] = {router_cmd_ch_unsub, ROUTER_D_SKIP},
    [RMSG_INFO] = {router_cmd_info, ROUTER_D_SKIP},
    [RMSG_SECRET] = {router_cmd_secret, ROUTER_D_BYTES},
    [RMSG_PING] = {router_cmd_ping, ROUTER_D_SKIP},
    [RMSG_PONG] = {router_cmd_pong, ROUTER_D_SKIP},
    [RMSG_BIND] = {router_cmd_bind, ROUTER_D_BYTES},
    [RMSG_UNBIND] = {router_cmd_bind, ROUTER_D_SKIP},
    [RMSG_SEND_UID] = {router_cmd_uids, ROUTER_D_PAYLOAD},
    [RMSG_KICK_UID] = {router_cmd_uids, ROUTER_D_SKIP},
    [RMSG_SESSION_SET] = {router_cmd_session_set, ROUTER_D_PAYLOAD},
    [RMSG_SEND_ALL_EX] = {router_cmd_send_all, ROUTER_D_PAYLOAD},
    [RMSG_CH_PUB_EX] = {router_cmd_ch_pub_ex, ROUTER_D_PAYLOAD},
    [RMSG_IS_ONLINE] = {router_query_is_online, ROUTER_D_SKIP},
    [RMSG_UID_COUNT] = {router_query_count, ROUTER_D_SKIP},
    [RMSG_UID_SIDS] = {router_query_uid_sids, ROUTER_D_SKIP},
    [RMSG_SID_UID] = {router_query_sid_uid, ROUTER_D_SKIP},
    [RMSG_SESSION_GET] = {router_query_session_get, ROUTER_D_SKIP},
    [RMSG_CH_COUNT] = {router_query_count, ROUTER_D_SKIP},
    [RMSG_CH_MEMBERS] = {router_query_ch_members, ROUTER_D_SKIP},
    [RMSG_CH_SESSIONS] = {router_query_ch_sessions, ROUTER_D_SKIP},
    [RMSG_CHANNELS] = {router_query_channels, ROUTER_D_SKIP},
    [RMSG_ERROR] = {router_cmd_unexpected, ROUTER_D_SKIP},
    [RMSG_GW_QUERY] = {router_cmd_unexpected, ROUTER_D_SKIP},
    [RMSG_GW_ANSWER] = {router_cmd_gw_answer, ROUTER_D_BYTES},
    [RMSG_HELLO] = {router_cmd_hello, ROUTER_D_BYTES},
};

/* ---- connections ---- */

/* Handles one whole message whose header (already checked) and S are consumed;
 * D is at the front of `in` and is consumed here. */
static void router_dispatch(struct rconn *c, struct rmsg *m, struct evbuffer *in)
{
    const struct router_cmd *cmd = &c->r->cmds[m->type];
    enum router_d d = cmd->d;
    struct evbuffer *payload = NULL;
    int rc;

    if (d == ROUTER_D_PAYLOAD) {
        /* Moves whole chains where it can: the body is not copied. The
         * buffer is the router's, emptied after each message (commands take
         * its content by reference or by moving it, never the buffer). */
        payload = c->r->payload;
        if (evbuffer_remove_buffer(in, payload, m->len) != (int)m->len)
            goto fail;
    } else if (d == ROUTER_D_BYTES) {
        if (m->len > 0 && (m->d = evbuffer_pullup(in, m->len)) == NULL)
            goto fail;
    }
    /* The shapes the header cannot tell (v2 types): a bad message is whole,
     * so it is refused and the connection goes on. */
    rc = rmsg_validate(m);
    /* A gateway link asks nothing: its queries would have the router ask
     * gateways, itself among them, on its behalf. */
    if (rc == RMSG_OK && c->link && rmsg_is_query(m->type))
        rc = RMSG_ERR_LINK_QUERY;
    if (d == ROUTER_D_SKIP) {
        evbuffer_drain(in, m->len);
        m->len = 0;
    }
    counter_add(&c->r->ctr.messages[m->type], 1);
    if (rc != RMSG_OK)
        router_conn_refuse(c, m, rmsg_strerror(rc));
    else
        cmd->fn(c, m, payload);
    if (d == ROUTER_D_BYTES)
        evbuffer_drain(in, m->len);
    if (payload != NULL)
        evbuffer_drain(payload, evbuffer_get_length(payload));
    return;
fail:
    log_err("router: %s: out of memory reading %s (%u bytes), closing", c->peer,
            rmsg_type_name(m->type), m->len);
    if (payload != NULL)
        evbuffer_drain(payload, evbuffer_get_length(payload));
    router_conn_kill(c);
}

/* ---- local connections: the HTTP API's (router_cmd.h) ---- */

struct rconn *router_local_new(struct router *r, const char *peer, router_answer_fn *fn, void *arg)
{
    struct rconn *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return NULL;
    c->r = r;
    c->authed = 1; /* the HTTP API checked the secret itself */
    STAILQ_INIT(&c->answers);
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    c->on_answer = fn;
    c->answer_arg = arg;
    TAILQ_INSERT_TAIL(&r->conns, c, entry);
    return c;
}

/* As router_dispatch, for a message whose S and D are in the caller's
 * memory: the same table, the same checks (the framing's bound on D too). */
int router_local_run(struct rconn *c, struct rmsg *m)
{
    struct router *r = c->r;
    const struct router_cmd *cmd;
    struct evbuffer *payload = NULL;
    int rc;

    if (m->type == 0 || m->type > RMSG_TYPE_MAX)
        return RMSG_ERR_TYPE;
    if (m->len > rmsg_max_len(m->type, r->max_len))
        return RMSG_ERR_LEN;
    if ((rc = rmsg_validate(m)) != RMSG_OK)
        return rc;
    if (c->dead)
        return RMSG_OK; /* dropped by a message before: its owner was told */
    cmd = &r->cmds[m->type];
    if (cmd->d == ROUTER_D_PAYLOAD) {
        payload = r->payload;
        if (m->len > 0 && evbuffer_add(payload, m->d, m->len) < 0) {
            log_err("router: %s: out of memory reading %s (%u bytes), closing", c->peer,
                    rmsg_type_name(m->type), m->len);
            evbuffer_drain(payload, evbuffer_get_length(payload));
            router_conn_kill(c);
            return RMSG_OK;
        }
    } else if (cmd->d == ROUTER_D_SKIP) {
        m->len = 0;
    }
    cmd->fn(c, m, payload);
    if (payload != NULL)
        evbuffer_drain(payload, evbuffer_get_length(payload));
    return RMSG_OK;
}

void router_local_close(struct rconn *c)
{
    c->on_answer = NULL;
    router_conn_kill(c);
}

const struct config *router_config(const struct router *r)
{
    return r->cfg;
}

struct event_base *router_base(const struct router *r)
{
    return r->base;
}

static void router_conn_read(struct conn *conn, void *arg)
{
    struct rconn *c = arg;
    struct router *r = c->r;
    struct evbuffer *in = conn_input(conn);
    unsigned char hdr[RMSG_HEADER_LEN];
    struct rmsg m;
    int rc;

    /* A query waiting for gateways holds the connection: nothing after it is
     * read until it is answered, so a backend cannot pile up gateway queries
     * (each costs the links a GW_QUERY of its SIDs) or answers behind one. */
    while (!c->dead && c->nwaiting == 0
           && evbuffer_copyout(in, hdr, sizeof(hdr)) == (ev_ssize_t)sizeof(hdr)) {
        rc = rmsg_decode_header(hdr, sizeof(hdr), r->max_len, &m);
        if (rc != RMSG_OK) {
            log_err("router: %s: %s (type %u, slen %u, len %u), closing", c->peer,
                    rmsg_strerror(rc), m.type, m.slen, m.len);
            router_conn_kill(c);
            return;
        }
        /* Judged on the header alone, before a byte of the body is buffered:
         * an untrusted peer gets to send AUTH or SECRET (whose length the
         * codec caps at what they need), nothing else. */
        if (!c->authed && m.type != RMSG_AUTH && m.type != RMSG_SECRET) {
            log_err("router: %s: %s (%u + %u bytes announced) before ROUTER_SECRET, closing",
                    c->peer, rmsg_type_name(m.type), m.slen, m.len);
            router_conn_kill(c);
            return;
        }
        /* len is bounded, so waiting for the rest is bounded too. */
        if (evbuffer_get_length(in) < rmsg_size(&m))
            return;
        evbuffer_drain(in, sizeof(hdr));
        evbuffer_remove(in, r->s, m.slen);
        m.s = r->s;
        router_dispatch(c, &m, in);
    }
}

static void router_conn_write(struct conn *conn, void *arg)
{
    struct rconn *c = arg;

    /* Output is empty: a backend that closed its side has had its replies. */
    if (c->draining)
        router_conn_kill(c);
}

static void router_conn_event(struct conn *conn, short what, void *arg)
{
    struct rconn *c = arg;
    size_t left;

    if (what & CONN_EOF) {
        /* Everything complete was handled as it arrived; what is left is the
         * start of a message the peer never finished. */
        left = conn_input_length(conn);
        if (left > 0)
            log_info("router: %s: closed in the middle of a message (%zu bytes dropped)", c->peer,
                     left);
        c->drop = ROUTER_DROP_CLOSED;
        if (c->link)
            log_info("router: %s: gateway %u/%u disconnected, forgetting its %zu sessions", c->peer,
                     c->server_id, c->worker_id, rtable_link_sessions(c->link));
        else
            log_debug("router: %s: closed", c->peer);
        if (!c->link && conn_output_length(conn) > 0) {
            struct timeval tv = {ROUTER_DRAIN_SECONDS, 0};
            c->draining = 1;
            conn_set_timeouts(conn, NULL, &tv);
            return;
        }
    } else if ((what & CONN_TIMEOUT) && (what & CONN_READING) && c->link) {
        log_err("router: %s: gateway %u/%u: nothing received for %d s (LINK_TIMEOUT) though it "
                "answered PING before: the link is dead, forgetting its %zu sessions",
                c->peer, c->server_id, c->worker_id, c->r->cfg->link_timeout,
                rtable_link_sessions(c->link));
        c->drop = ROUTER_DROP_TIMEOUT;
    } else if (what & CONN_TIMEOUT) {
        log_info("router: %s: reply not read within %d s, closing", c->peer, ROUTER_DRAIN_SECONDS);
    } else if (what & CONN_ERROR) {
        /* A gateway that closes with our data unread resets the connection. */
        if (EVUTIL_SOCKET_ERROR() == ECONNRESET)
            c->drop = ROUTER_DROP_CLOSED;
        if (c->link)
            log_info("router: %s: gateway %u/%u: %s, forgetting its %zu sessions", c->peer,
                     c->server_id, c->worker_id,
                     evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()),
                     rtable_link_sessions(c->link));
        else
            log_info("router: %s: %s", c->peer,
                     evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    }
    router_conn_kill(c);
}

static void router_auth_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct rconn *c = arg;

    log_err("router: %s: no ROUTER_SECRET within %d s (%zu bytes received), closing", c->peer,
            ROUTER_AUTH_SECONDS, conn_input_length(c->conn));
    router_conn_kill(c);
}

static void router_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
                          int salen, void *arg)
{
    struct router *r = arg;
    struct rconn *c = calloc(1, sizeof(*c));
    int one = 1;

    if (c == NULL)
        goto fail;
    c->r = r;
    STAILQ_INIT(&c->answers);
    c->authed = !r->has_secret;
    netaddr_format(sa, c->peer, sizeof(c->peer));
    /* Small commands should leave at once; keepalive finds gateways that vanished. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    c->conn = conn_new(r->base, fd, NULL);
    if (c->conn == NULL)
        goto fail;
    conn_setcb(c->conn, router_conn_read, router_conn_write, router_conn_event, c);
    if (!c->authed) {
        /* Every untrusted peer gets the same delay: a common timeout keeps
         * thousands of them one queue, not a heap. */
        c->auth_deadline = evtimer_new(r->base, router_auth_timeout, c);
        if (c->auth_deadline == NULL || evtimer_add(c->auth_deadline, r->auth_tv) < 0)
            goto fail;
        conn_set_read_limit(c->conn, ROUTER_PREAUTH_INPUT);
    }
    conn_read(c->conn, 1);
    TAILQ_INSERT_TAIL(&r->conns, c, entry);
    log_info("router: %s: connected", c->peer);
    return;
fail:
    log_err("router: out of memory accepting a connection, closed");
    if (c != NULL && c->conn != NULL)
        conn_free(c->conn); /* closes fd */
    else
        evutil_closesocket(fd);
    if (c != NULL && c->auth_deadline != NULL)
        event_free(c->auth_deadline);
    free(c);
}

static void router_accept_error(struct evconnlistener *lev, void *arg)
{
    struct router *r = arg;
    int err = EVUTIL_SOCKET_ERROR();
    struct timeval tv = {0, ROUTER_ACCEPT_PAUSE_MS * 1000};

    log_err("router: accept: %s", evutil_socket_error_to_string(err));
    /* Out of descriptors: the pending connection stays readable, so accepting
     * again at once would spin. Pause and let closes free some. */
    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        evconnlistener_disable(lev);
        evtimer_add(r->accept_resume, &tv);
    }
}

static void router_accept_resume(evutil_socket_t fd, short what, void *arg)
{
    struct router *r = arg;

    evconnlistener_enable(r->listener);
}

/* The upgrade is over, one way or the other: its events and pipe go. */
static void router_upgrade_end(struct router *r)
{
    if (r->up_ready) {
        event_free(r->up_ready);
        r->up_ready = NULL;
    }
    if (r->up_timer) {
        event_free(r->up_timer);
        r->up_timer = NULL;
    }
    if (r->up_fd >= 0)
        close(r->up_fd);
    r->up_fd = -1;
    r->up_pid = 0;
}

static void router_upgrade_fail(struct router *r, const char *why, int reaped)
{
    log_err("router: upgrade failed: %s; this router (pid %d) keeps serving", why, (int)getpid());
    if (!reaped) {
        kill(r->up_pid, SIGKILL);
        waitpid(r->up_pid, NULL, 0);
    }
    proc_upgrade_restore_pidfile(r->cfg->pid_file);
    router_upgrade_end(r);
}

/* The successor serves: stop accepting and close every connection; the
 * gateways reconnect (to the successor, which holds the same socket) and
 * resync their sessions and channels, as after a router restart. */
static void router_upgrade_ready(evutil_socket_t fd, short what, void *arg)
{
    struct router *r = arg;
    char b;
    (void)what;
    if (read(fd, &b, 1) != 1)
        return; /* EOF: the successor died; SIGCHLD says how */
    log_info("router: upgrade: new router %d serves; closing %s connections and stopping",
             (int)r->up_pid, "all");
    router_upgrade_end(r);
    r->handed_over = 1;
    evconnlistener_disable(r->listener);
    struct rconn *c, *next;
    for (c = TAILQ_FIRST(&r->conns); c; c = next) {
        next = TAILQ_NEXT(c, entry);
        router_conn_kill(c);
    }
    event_base_loopexit(r->base, NULL);
}

static void router_upgrade_timeout(evutil_socket_t fd, short what, void *arg)
{
    char why[64];
    (void)fd;
    (void)what;
    snprintf(why, sizeof(why), "the new router was not serving within %d s", PROC_UPGRADE_SECONDS);
    router_upgrade_fail(arg, why, 0);
}

static void router_upgrade_start(struct router *r)
{
    if (r->up_pid > 0) {
        log_err("router: upgrade: one is already under way (new router %d)", (int)r->up_pid);
        return;
    }
    int fd = evconnlistener_get_fd(r->listener);
    pid_t pid =
        proc_upgrade_spawn("router", r->exe, r->conf, fd, r->cfg->pid_file, 0, &r->sigs, &r->up_fd);
    if (pid < 0)
        return;
    r->up_pid = pid;
    struct timeval tv = {PROC_UPGRADE_SECONDS, 0};
    r->up_ready = event_new(r->base, r->up_fd, EV_READ | EV_PERSIST, router_upgrade_ready, r);
    r->up_timer = evtimer_new(r->base, router_upgrade_timeout, r);
    if (!r->up_ready || !r->up_timer || event_add(r->up_ready, NULL) < 0
        || evtimer_add(r->up_timer, &tv) < 0)
        router_upgrade_fail(r, "out of memory", 0);
}

static void router_child(struct router *r)
{
    int status;
    char why[96];
    if (r->up_pid <= 0 || waitpid(r->up_pid, &status, WNOHANG) != r->up_pid)
        return;
    if (WIFEXITED(status))
        snprintf(why, sizeof(why), "the new router exited with status %d (see its log)",
                 WEXITSTATUS(status));
    else
        snprintf(why, sizeof(why), "the new router was killed by signal %d", WTERMSIG(status));
    router_upgrade_fail(r, why, 1);
}

static void router_signal(evutil_socket_t sig, short what, void *arg)
{
    struct router *r = arg;

    if (sig == SIGUSR2) {
        router_upgrade_start(r);
        return;
    }
    if (sig == SIGCHLD) {
        router_child(r);
        return;
    }
    if (sig == SIGUSR1) {
        if (log_reopen() < 0)
            log_err("router: reopening the log file: %s", strerror(errno));
        else
            log_info("router: log file reopened");
        return;
    }
    if (sig == SIGHUP) {
        /* The router's state lives in its connections: only the log level can
         * change under them; the rest needs a restart (gateways resync). */
        char err[1024];
        struct config fresh;
        if (config_load(&fresh, r->cfg->file, err, sizeof(err)) < 0) {
            log_err("router: reload: %s; keeping the running configuration", err);
        } else {
            log_set_level(fresh.log_level);
            log_info("router: reload: LOG_LEVEL %d applied; other changes need a restart",
                     fresh.log_level);
            config_free(&fresh);
        }
        return;
    }
    log_info("router: signal %d, stopping", (int)sig);
    event_base_loopbreak(r->base);
}

static void router_free(struct router *r)
{
    struct rconn *c;

    /* First the HTTP API: its requests' connections go (no callback after),
     * before the bus answers what is pending with nothing. */
    if (r->http != NULL)
        r->http_svc->stop(r->http);
    r->http = NULL;
    /* Freeing the bus answers its pending callbacks, which touch conns. */
    bus_free(r->bus);
    r->bus = NULL;
    router_nats_free(r->nats);
    r->nats = NULL;
    while (!TAILQ_EMPTY(&r->gwqs))
        router_gwq_free(TAILQ_FIRST(&r->gwqs));

    while ((c = TAILQ_FIRST(&r->conns)) != NULL) {
        TAILQ_REMOVE(&r->conns, c, entry);
        router_conn_free(c);
    }
    while ((c = TAILQ_FIRST(&r->dead)) != NULL) {
        TAILQ_REMOVE(&r->dead, c, entry);
        router_conn_free(c);
    }
    if (r->listener != NULL)
        evconnlistener_free(r->listener);
    if (r->sig_int != NULL)
        event_free(r->sig_int);
    if (r->sig_term != NULL)
        event_free(r->sig_term);
    if (r->sig_usr1 != NULL)
        event_free(r->sig_usr1);
    if (r->sig_hup != NULL)
        event_free(r->sig_hup);
    if (r->sig_quit != NULL)
        event_free(r->sig_quit);
    if (r->sig_usr2 != NULL)
        event_free(r->sig_usr2);
    if (r->sig_chld != NULL)
        event_free(r->sig_chld);
    if (r->up_pid > 0)
        router_upgrade_fail(r, "the router stops", 0);
    if (r->reap != NULL)
        event_free(r->reap);
    if (r->accept_resume != NULL)
        event_free(r->accept_resume);
    if (r->trim != NULL)
        event_free(r->trim);
    if (r->ping != NULL)
        event_free(r->ping);
    /* Every link was forgotten above, so the tables are empty. */
    rtable_free(r->tab);
    rtable_split_free(&r->split);
    rtable_uid_split_free(&r->usplit);
    hmap_free(r->gwq_ids, NULL);
    if (r->payload != NULL)
        evbuffer_free(r->payload);
    if (r->base != NULL)
        event_base_free(r->base);
    free(r);
}

int router_run(const struct config *cfg, const struct router_service *http)
{
    struct router *r = calloc(1, sizeof(*r));
    const char *secret = cfg->router_secret;
    int fd = -1, rc = 1, pidfile = 0;

    if (r == NULL) {
        log_err("router: out of memory");
        return 1;
    }
    r->cfg = cfg;
    r->http_svc = http;
    r->up_fd = -1;
    /* Blocked until their handlers exist: one arriving in between (a SIGHUP
     * right after start) would otherwise take its default action. */
    proc_signal_set(&r->sigs);
    sigprocmask(SIG_BLOCK, &r->sigs, NULL);
    proc_upgrade_paths(cfg->file, r->exe, sizeof(r->exe), r->conf, sizeof(r->conf));
    int inherited = proc_inherited_listener();
    int ready_fd = proc_env_fd(PROC_ENV_READY_FD);
    TAILQ_INIT(&r->conns);
    TAILQ_INIT(&r->dead);
    TAILQ_INIT(&r->gwqs);
    r->output_limit = cfg->router_output_limit;
    r->max_len = ROUTER_MAX_LEN;
    if (r->output_limit > 0 && r->output_limit / 2 < r->max_len)
        r->max_len = (uint32_t)(r->output_limit / 2);
    /* An answer must fit a backend's output like a message a link's. */
    r->answer_max = cfg->router_answer_max;
    if (r->output_limit > 0 && r->output_limit / 2 < r->answer_max)
        r->answer_max = r->output_limit / 2;
    /* A GW_ANSWER to one GW_QUERY must fit max_len, whatever the data. */
    r->gwq_per_msg = (r->max_len - RMSG_QID_LEN) / (RMSG_RECORD_HEAD + RMSG_MAX_SESSION);
    if (r->gwq_per_msg > RMSG_MAX_SIDS)
        r->gwq_per_msg = RMSG_MAX_SIDS;
    if (r->gwq_per_msg == 0)
        r->gwq_per_msg = 1;
    if (secret != NULL && secret[0] != '\0') {
        r->has_secret = 1;
        if (EVP_Digest(secret, strlen(secret), r->secret_md, &r->secret_mdlen, EVP_sha256(), NULL)
            != 1) {
            log_err("router: cannot hash ROUTER_SECRET (OpenSSL SHA-256 unavailable)");
            goto fail;
        }
    }
    signal(SIGPIPE, SIG_IGN);

    if ((fd = inherited >= 0 ? inherited : proc_listen(cfg->host, cfg->port)) < 0)
        goto fail;
    if (!r->has_secret && !proc_is_loopback(fd))
        log_err("router: WARNING: listening on %s:%d, not a loopback address, without "
                "ROUTER_SECRET: anyone who can reach this port can message and kick every "
                "client. Set ROUTER_SECRET or bind HOST to 127.0.0.1.",
                cfg->host, cfg->port);
    /* A router started by an upgrade is its predecessor's child: already detached. */
    if (cfg->daemonize && inherited < 0 && daemon(0, 0) != 0) {
        log_err("router: daemonize: %s", strerror(errno));
        goto fail;
    }
    if (cfg->pid_file != NULL) {
        if (proc_pidfile_write(cfg->pid_file) < 0)
            goto fail;
        pidfile = 1;
    }
    proc_log_owner(cfg); /* -s reopen, after a rotation, runs as USER */
    if (proc_drop_privileges(cfg) < 0)
        goto fail;

    r->tab = rtable_new();
    if (nbus_is_nats(cfg->bus))
        nbus_global_init(); /* before the loop: libnats' threads touch it */
    r->base = loop_new();
    r->gwq_ids = hmap_new(0);
    r->payload = evbuffer_new();
    if (r->tab == NULL || r->base == NULL || r->gwq_ids == NULL || r->payload == NULL)
        goto fail_oom;
    {
        struct timeval tv = {ROUTER_AUTH_SECONDS, 0};
        struct timeval gw = {cfg->link_timeout > 0 ? cfg->link_timeout : ROUTER_GW_SECONDS, 0};
        if ((r->auth_tv = event_base_init_common_timeout(r->base, &tv)) == NULL
            || (r->gwq_tv = event_base_init_common_timeout(r->base, &gw)) == NULL)
            goto fail_oom;
    }
    r->listener = evconnlistener_new(r->base, router_accept, r,
                                     LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
    if (r->listener == NULL)
        goto fail_oom;
    fd = -1; /* the listener owns it */
    evconnlistener_set_error_cb(r->listener, router_accept_error);
    r->sig_int = evsignal_new(r->base, SIGINT, router_signal, r);
    r->sig_term = evsignal_new(r->base, SIGTERM, router_signal, r);
    r->sig_usr1 = evsignal_new(r->base, SIGUSR1, router_signal, r);
    r->sig_hup = evsignal_new(r->base, SIGHUP, router_signal, r);
    r->sig_quit = evsignal_new(r->base, SIGQUIT, router_signal, r);
    r->sig_usr2 = evsignal_new(r->base, SIGUSR2, router_signal, r);
    r->sig_chld = evsignal_new(r->base, SIGCHLD, router_signal, r);
    r->reap = event_new(r->base, -1, 0, router_reap, r);
    r->accept_resume = evtimer_new(r->base, router_accept_resume, r);
    r->trim = loop_trim_new(r->base);
    if (r->sig_int == NULL || r->sig_term == NULL || r->sig_usr1 == NULL || r->sig_hup == NULL
        || r->reap == NULL || r->accept_resume == NULL || evsignal_add(r->sig_int, NULL) < 0
        || evsignal_add(r->sig_term, NULL) < 0 || evsignal_add(r->sig_usr1, NULL) < 0
        || evsignal_add(r->sig_hup, NULL) < 0 || r->sig_quit == NULL || r->sig_usr2 == NULL
        || r->sig_chld == NULL || evsignal_add(r->sig_quit, NULL) < 0
        || evsignal_add(r->sig_usr2, NULL) < 0 || evsignal_add(r->sig_chld, NULL) < 0)
        goto fail_oom;
    sigprocmask(SIG_UNBLOCK, &r->sigs, NULL);

    r->cmds = router_cmds;
    if (nbus_is_nats(cfg->bus)) {
        r->cmds = router_nats_cmds;
        if ((r->nats = router_nats_new(r, cfg, &r->ctr.bus)) == NULL)
            goto fail;
    } else if (cfg->bus != NULL) {
        struct bus_handlers h = {0};
        r->cmds = router_bus_cmds;
        if ((r->bus = bus_new(r->base, cfg->bus, cfg->bus_prefix, cfg->link_timeout, &h)) == NULL)
            goto fail;
        bus_set_counters(r->bus, &r->ctr.bus);
    } else if (cfg->link_timeout > 0) {
        /* Three PINGs per LINK_TIMEOUT: one lost to a slow moment is no alarm. */
        long ms = cfg->link_timeout * 1000L / 3;
        struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
        r->ping = event_new(r->base, -1, EV_PERSIST, router_ping_links, r);
        if (r->ping == NULL || event_add(r->ping, &tv) < 0)
            goto fail_oom;
    }
    if (r->http_svc != NULL && r->http_svc->wanted(cfg)
        && (r->http = r->http_svc->start(r)) == NULL)
        goto fail;
    log_info("router: listening on %s:%d (max message %u bytes, output limit %zu bytes, max "
             "answer %zu bytes, %s%s)",
             cfg->host, cfg->port, r->max_len, r->output_limit, r->answer_max,
             r->has_secret ? "ROUTER_SECRET required" : "no ROUTER_SECRET",
             r->bus || r->nats ? ", stateless on the bus" : "");
    if (ready_fd >= 0) { /* a predecessor waits for this to hand over */
        proc_upgrade_ready(ready_fd);
        ready_fd = -1;
    }
    if (event_base_dispatch(r->base) < 0) {
        log_err("router: event loop failed");
        goto fail;
    }
    log_info("router: stopped");
    rc = 0;
    goto done;
fail_oom:
    log_err("router: out of memory starting up");
fail:
    rc = 1;
done:
    if (fd >= 0)
        close(fd);
    if (ready_fd >= 0)
        close(ready_fd);
    if (pidfile && r->handed_over)
        proc_upgrade_remove_oldbin(cfg->pid_file);
    else if (pidfile)
        unlink(cfg->pid_file);
    router_free(r);
    return rc;
}
