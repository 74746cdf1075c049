/* fcgi_echo.c - the benchmarks' FastCGI backend: answers every request with
 * its STDIN body as STDOUT (with a Content-Length header), as fast as it can,
 * so that in a benchmark the backend is never what limits the gateway.
 *
 * - keepalive: FCGI_KEEP_CONN is honoured; without it the connection is closed
 *   after the reply, as the spec says.
 * - multiplexing: FCGI_GET_VALUES is answered (FCGI_MPXS_CONNS = 1) and any
 *   number of request ids may be in progress on one connection.
 * - EVENT=1 (a gateway's connect event) is answered with the SESSIONID as the
 *   body when started with -s, so a load generator learns its clients' SIDs
 *   (the fan-out scenario puts them in a channel with CH_ADD).
 * - a request with CONTENT_TYPE application/websocket-events (Pushpin's
 *   WebSocket-over-HTTP, passed through nginx's fastcgi_pass) is answered in
 *   that format: OPEN with OPEN, every TEXT/BINARY event echoed, PING with
 *   PONG, CLOSE with CLOSE. This is the GRIP peer's "echo" origin.
 *
 * One libevent loop per process; -w N forks N processes that share the
 * listening socket. Usage: fcgi_echo [-l HOST:PORT] [-w N] [-s] */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "../src/fcgi.h"

struct echo_req {
    struct echo_req *next;
    uint16_t id;
    int keep_conn;
    int params_done;
    struct evbuffer *params; /* PARAMS stream until its empty record */
    struct evbuffer *body;   /* STDIN stream */
};

struct echo_conn {
    struct bufferevent *bev;
    struct echo_req *reqs; /* in progress, any number (multiplexing) */
    int closing;
};

static int opt_sid_welcome;

static void echo_req_free(struct echo_req *r)
{
    evbuffer_free(r->params);
    evbuffer_free(r->body);
    free(r);
}

static void echo_conn_free(struct echo_conn *c)
{
    while (c->reqs) {
        struct echo_req *r = c->reqs;
        c->reqs = r->next;
        echo_req_free(r);
    }
    bufferevent_free(c->bev);
    free(c);
}

/* Appends one stream record per 65535 bytes of data (or one empty record). */
static void echo_stream(struct evbuffer *out, int type, uint16_t id, const void *data, size_t n)
{
    uint8_t hdr[FCGI_HEADER_LEN];
    const uint8_t *p = data;
    do {
        size_t chunk = n > FCGI_MAX_CONTENT ? FCGI_MAX_CONTENT : n;
        fcgi_header_encode(hdr, type, id, (uint16_t)chunk, 0);
        evbuffer_add(out, hdr, sizeof(hdr));
        if (chunk)
            evbuffer_add(out, p, chunk);
        p += chunk;
        n -= chunk;
    } while (n > 0);
}

static void echo_stream_buffer(struct evbuffer *out, int type, uint16_t id, struct evbuffer *b)
{
    size_t n = evbuffer_get_length(b);
    while (n > 0) {
        size_t chunk = n > FCGI_MAX_CONTENT ? FCGI_MAX_CONTENT : n;
        uint8_t hdr[FCGI_HEADER_LEN];
        fcgi_header_encode(hdr, type, id, (uint16_t)chunk, 0);
        evbuffer_add(out, hdr, sizeof(hdr));
        evbuffer_remove_buffer(b, out, chunk);
        n -= chunk;
    }
}

static void echo_end(struct evbuffer *out, uint16_t id, uint8_t protocol_status)
{
    uint8_t rec[16];
    fcgi_header_encode(rec, FCGI_END_REQUEST, id, 8, 0);
    memset(rec + 8, 0, 8);
    rec[12] = protocol_status;
    evbuffer_add(out, rec, sizeof(rec));
}

/* Looks up one param of a complete PARAMS stream. */
static int echo_param(struct evbuffer *params, const char *want, const uint8_t **val,
                      size_t *vlen)
{
    size_t len = evbuffer_get_length(params);
    const uint8_t *p = evbuffer_pullup(params, -1);
    size_t wl = strlen(want);
    while (len > 0) {
        const uint8_t *n, *v;
        size_t nl, vl;
        long used = fcgi_nv_decode(p, len, &n, &nl, &v, &vl);
        if (used <= 0)
            return 0;
        if (nl == wl && memcmp(n, want, wl) == 0) {
            *val = v;
            *vlen = vl;
            return 1;
        }
        p += used;
        len -= (size_t)used;
    }
    return 0;
}

/* WebSocket-over-HTTP: "TYPE[ HEXLEN]\r\n[CONTENT\r\n]" events, answered in kind. */
static void echo_ws_events(struct evbuffer *in, struct evbuffer *out)
{
    size_t len = evbuffer_get_length(in);
    const char *p = (const char *)evbuffer_pullup(in, -1);
    const char *end = p + len;
    while (p < end) {
        const char *eol = memchr(p, '\r', (size_t)(end - p));
        if (!eol || eol + 1 >= end || eol[1] != '\n')
            break;
        const char *sp = memchr(p, ' ', (size_t)(eol - p));
        size_t tl = (size_t)((sp ? sp : eol) - p);
        size_t clen = sp ? strtoul(sp + 1, NULL, 16) : 0;
        const char *content = eol + 2;
        if (sp && (size_t)(end - content) < clen + 2)
            break;
        if (tl == 4 && memcmp(p, "OPEN", 4) == 0) {
            evbuffer_add(out, "OPEN\r\n", 6);
        } else if ((tl == 4 && memcmp(p, "TEXT", 4) == 0) ||
                   (tl == 6 && memcmp(p, "BINARY", 6) == 0) ||
                   (tl == 5 && memcmp(p, "CLOSE", 5) == 0)) {
            evbuffer_add(out, p, (size_t)(content - p));
            if (sp)
                evbuffer_add(out, content, clen + 2);
        } else if (tl == 4 && memcmp(p, "PING", 4) == 0) {
            evbuffer_add_printf(out, "PONG %zx\r\n", clen);
            if (sp)
                evbuffer_add(out, content, clen + 2);
        }
        p = sp ? content + clen + 2 : content;
    }
}

static void echo_reply(struct echo_conn *c, struct echo_req *r)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    const uint8_t *v;
    size_t vl;
    char head[256];
    int hl;
    if (echo_param(r->params, "CONTENT_TYPE", &v, &vl) && vl >= 28 &&
        memcmp(v, "application/websocket-events", 28) == 0) {
        struct evbuffer *ev = evbuffer_new();
        echo_ws_events(r->body, ev);
        evbuffer_free(r->body);
        r->body = ev;
        hl = snprintf(head, sizeof(head),
                      "Content-Type: application/websocket-events\r\n"
                      "Content-Length: %zu\r\n\r\n",
                      evbuffer_get_length(ev));
    } else {
        if (opt_sid_welcome && evbuffer_get_length(r->body) == 0 &&
            echo_param(r->params, "EVENT", &v, &vl) && vl == 1 && v[0] == '1' &&
            echo_param(r->params, "SESSIONID", &v, &vl))
            evbuffer_add(r->body, v, vl);
        hl = snprintf(head, sizeof(head), "Content-Type: text/plain\r\nContent-Length: %zu\r\n\r\n",
                      evbuffer_get_length(r->body));
    }
    /* The CGI head and the body go out in one STDOUT stream. */
    size_t blen = evbuffer_get_length(r->body);
    if ((size_t)hl + blen <= FCGI_MAX_CONTENT) {
        uint8_t hdr[FCGI_HEADER_LEN];
        fcgi_header_encode(hdr, FCGI_STDOUT, r->id, (uint16_t)(hl + blen), 0);
        evbuffer_add(out, hdr, sizeof(hdr));
        evbuffer_add(out, head, (size_t)hl);
        evbuffer_add_buffer(out, r->body);
    } else {
        echo_stream(out, FCGI_STDOUT, r->id, head, (size_t)hl);
        echo_stream_buffer(out, FCGI_STDOUT, r->id, r->body);
    }
    echo_stream(out, FCGI_STDOUT, r->id, NULL, 0);
    echo_end(out, r->id, 0);
}

static struct echo_req **echo_find(struct echo_conn *c, uint16_t id)
{
    struct echo_req **pp = &c->reqs;
    while (*pp && (*pp)->id != id)
        pp = &(*pp)->next;
    return pp;
}

/* FCGI_GET_VALUES: answer the three standard variables. */
static void echo_get_values(struct echo_conn *c)
{
    static const char *names[] = {"FCGI_MAX_CONNS", "FCGI_MAX_REQS", "FCGI_MPXS_CONNS"};
    static const char *values[] = {"100000", "100000", "1"};
    uint8_t body[128];
    size_t n = 0;
    for (int i = 0; i < 3; i++)
        n += fcgi_nv_encode(body + n, names[i], strlen(names[i]), values[i], strlen(values[i]));
    uint8_t hdr[FCGI_HEADER_LEN];
    fcgi_header_encode(hdr, FCGI_GET_VALUES_RESULT, 0, (uint16_t)n, 0);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    evbuffer_add(out, hdr, sizeof(hdr));
    evbuffer_add(out, body, n);
}

/* Handles one record. Returns -1 when the connection must close. */
static int echo_record(struct echo_conn *c, const struct fcgi_header *h, const uint8_t *body)
{
    struct echo_req **pp, *r;
    switch (h->type) {
    case FCGI_GET_VALUES:
        echo_get_values(c);
        return 0;
    case FCGI_BEGIN_REQUEST:
        if (h->content_length < 8)
            return -1;
        r = calloc(1, sizeof(*r));
        r->id = h->request_id;
        r->keep_conn = body[2] & FCGI_KEEP_CONN;
        r->params = evbuffer_new();
        r->body = evbuffer_new();
        r->next = c->reqs;
        c->reqs = r;
        return 0;
    case FCGI_ABORT_REQUEST:
        pp = echo_find(c, h->request_id);
        if (!*pp)
            return 0;
        r = *pp;
        *pp = r->next;
        echo_end(bufferevent_get_output(c->bev), r->id, 0);
        echo_req_free(r);
        return 0;
    case FCGI_PARAMS:
    case FCGI_STDIN:
        pp = echo_find(c, h->request_id);
        if (!*pp)
            return 0;
        r = *pp;
        if (h->type == FCGI_PARAMS) {
            if (h->content_length == 0)
                r->params_done = 1;
            else
                evbuffer_add(r->params, body, h->content_length);
            return 0;
        }
        if (h->content_length > 0) {
            evbuffer_add(r->body, body, h->content_length);
            return 0;
        }
        *pp = r->next;
        echo_reply(c, r);
        int keep = r->keep_conn;
        echo_req_free(r);
        return keep ? 0 : -1;
    case FCGI_DATA:
        return 0;
    default: {
        uint8_t rec[16];
        fcgi_header_encode(rec, FCGI_UNKNOWN_TYPE, 0, 8, 0);
        memset(rec + 8, 0, 8);
        rec[8] = h->type;
        evbuffer_add(bufferevent_get_output(c->bev), rec, sizeof(rec));
        return 0;
    }
    }
}

static void echo_flushed(struct bufferevent *bev, void *arg)
{
    struct echo_conn *c = arg;
    if (c->closing && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        echo_conn_free(c);
}

static void echo_read(struct bufferevent *bev, void *arg)
{
    struct echo_conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (c->closing) {
        evbuffer_drain(in, evbuffer_get_length(in));
        return;
    }
    for (;;) {
        size_t len = evbuffer_get_length(in);
        struct fcgi_header h;
        uint8_t hb[FCGI_HEADER_LEN];
        if (len < FCGI_HEADER_LEN)
            return;
        evbuffer_copyout(in, hb, sizeof(hb));
        if (fcgi_header_decode(hb, sizeof(hb), &h) != FCGI_OK) {
            echo_conn_free(c);
            return;
        }
        size_t rec = FCGI_HEADER_LEN + (size_t)h.content_length + h.padding_length;
        if (len < rec)
            return;
        const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)rec);
        int rc = echo_record(c, &h, p + FCGI_HEADER_LEN);
        evbuffer_drain(in, rec);
        if (rc < 0) {
            c->closing = 1;
            bufferevent_disable(bev, EV_READ);
            echo_flushed(bev, c);
            return;
        }
    }
}

static void echo_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    (void)what;
    echo_conn_free(arg);
}

static void echo_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int sl,
                        void *arg)
{
    (void)l;
    (void)sa;
    (void)sl;
    struct event_base *base = arg;
    struct echo_conn *c = calloc(1, sizeof(*c));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, 1 /* TCP_NODELAY */, &one, sizeof(one));
    c->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(c->bev, echo_read, echo_flushed, echo_event, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

static void echo_stop(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    event_base_loopexit(arg, NULL);
}

int main(int argc, char **argv)
{
    const char *addr = "127.0.0.1:9000";
    int workers = 1, opt;
    while ((opt = getopt(argc, argv, "l:w:sh")) != -1) {
        switch (opt) {
        case 'l': addr = optarg; break;
        case 'w': workers = atoi(optarg); break;
        case 's': opt_sid_welcome = 1; break;
        default:
            fprintf(stderr, "usage: %s [-l HOST:PORT] [-w PROCESSES] [-s]\n", argv[0]);
            return 2;
        }
    }
    struct sockaddr_storage ss;
    int sl = sizeof(ss);
    if (evutil_parse_sockaddr_port(addr, (struct sockaddr *)&ss, &sl) < 0) {
        fprintf(stderr, "fcgi_echo: bad address %s\n", addr);
        return 2;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (fd < 0 || bind(fd, (struct sockaddr *)&ss, (socklen_t)sl) < 0 || listen(fd, 4096) < 0) {
        fprintf(stderr, "fcgi_echo: %s: %s\n", addr, strerror(errno));
        return 1;
    }
    evutil_make_socket_nonblocking(fd);
    signal(SIGPIPE, SIG_IGN);
    for (int i = 1; i < workers; i++)
        if (fork() == 0) { /* children run the same loop on the shared socket */
            prctl(PR_SET_PDEATHSIG, SIGTERM); /* and go when the parent is stopped */
            break;
        }
    struct event_base *base = event_base_new();
    struct evconnlistener *l = evconnlistener_new(base, echo_accept, base, 0, -1, fd);
    struct event *sig = evsignal_new(base, SIGTERM, echo_stop, base);
    struct event *sigi = evsignal_new(base, SIGINT, echo_stop, base);
    event_add(sig, NULL);
    event_add(sigi, NULL);
    event_base_dispatch(base);
    evconnlistener_free(l);
    event_free(sig);
    event_free(sigi);
    event_base_free(base);
    return 0;
}
