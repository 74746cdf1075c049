/* baseline.c - the least work a server can do for each benchmark scenario, on
 * the same sockets the gateway would use, so its results are the machine's
 * limit and the gateway's read as a fraction of it.
 *
 *   -m length   echo: every byte read is written straight back (a length frame
 *               echoed is a length frame), no parsing at all.
 *   -m ws       WebSocket: a real handshake (Sec-WebSocket-Accept computed),
 *               then every client frame is unmasked and sent back unmasked as
 *               one frame; pings are answered. This is also the idle and the
 *               connect baseline (no per-connection state beyond an fd slot).
 *   -P PORT     with -m ws: also listen on PORT (PORT + i for process i) for
 *               router-protocol messages (SEND_ALL, CH_PUB); each one's payload
 *               is framed once and written to every open WebSocket: the
 *               fan-out limit, with no router hop.
 *   -m fcgi     the gateway's socket work and nothing else: every client length
 *               frame becomes one FastCGI request (BEGIN_REQUEST with KEEP_CONN,
 *               one PARAMS record with the same params fooking sends, empty
 *               PARAMS, STDIN, empty STDIN) written in one write to the backend
 *               -b HOST:PORT over a kept-alive connection (one per client, one
 *               request at a time, as fooking without multiplexing); the reply's
 *               records are read until END_REQUEST, the CGI head skipped and the
 *               body written back as one length frame. Four system calls per
 *               round trip: read client, write backend, read backend, write
 *               client (plus a share of epoll_wait).
 *
 * Plain epoll, level-triggered, no libevent (its bufferevents are what the
 * gateway's extra system calls come from, and the reference must not inherit
 * them), no per-message allocation: every descriptor is registered once for
 * reading, EPOLLOUT is armed only when a write comes back short. -w N forks N
 * processes, each with its own SO_REUSEPORT listener (the kernel spreads
 * connections between them), as the gateway has N workers.
 * Usage: baseline -m length|ws|fcgi -l HOST:PORT [-b HOST:PORT] [-P PORT] [-w N] */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../src/fcgi.h"
#include "../src/rmsg.h"
#include "../src/ws.h"

#define BUF 65536

enum kind { K_FREE, K_LISTEN, K_PUBLISTEN, K_HANDSHAKE, K_OPEN, K_PUB,
            K_FCLIENT, K_BACKEND, K_CONNECTING };
enum mode { M_LENGTH, M_WS, M_FCGI };

struct slot {
    uint8_t kind;
    uint8_t busy;            /* fcgi backend: a request is out */
    uint32_t inlen, outlen;  /* partial input kept; output the socket did not take */
    uint32_t incap;          /* fcgi: `in` is kept for the connection's life */
    int pos;                 /* index in open_fds while an open WebSocket */
    int peer;                /* fcgi: the client's backend fd, or the backend's client, + 1 */
    uint32_t prelen;
    uint8_t *in, *out;       /* allocated only while something is pending */
    uint8_t *pre;            /* fcgi client: BEGIN_REQUEST + PARAMS head, encoded at accept */
};

static struct slot *slots;
static int nslots, epfd;
static enum mode mode;
static int mode_ws;
static struct sockaddr_in backend_addr;
static int *open_fds, nopen; /* the open WebSockets, for fan-out */
static uint8_t rbuf[BUF];
/* Everything one read produces goes out in one write per socket: a read that
 * brought 50 messages costs 50 frames but one syscall, as in the gateway. */
static uint8_t wbuf[2 * BUF + 64 * WS_MAX_FRAME_HEADER];
static size_t wlen;

static int listen_on(const char *host, int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4096) < 0) {
        fprintf(stderr, "baseline: %s:%d: %s\n", host, port, strerror(errno));
        exit(1);
    }
    return fd;
}

static void watch(int fd, uint32_t events, int op)
{
    struct epoll_event ev = {.events = events, .data.fd = fd};
    epoll_ctl(epfd, op, fd, &ev);
}

static void drop(int fd)
{
    struct slot *s = &slots[fd];
    if (s->kind == K_FREE)
        return;
    if (s->kind == K_OPEN && mode_ws) {
        int last = open_fds[--nopen];
        open_fds[s->pos] = last;
        slots[last].pos = s->pos;
    }
    int peer = s->peer;
    free(s->in);
    free(s->out);
    free(s->pre);
    memset(s, 0, sizeof(*s));
    close(fd);
    if (peer) /* fcgi: a client and its backend connection go together */
        drop(peer - 1);
}

/* Writes, keeping what the socket does not take (rare: a slow reader). */
static void send_bytes(int fd, const void *p, size_t n)
{
    struct slot *s = &slots[fd];
    ssize_t w = 0;
    if (s->kind == K_FREE)
        return;
    if (s->outlen == 0) {
        w = write(fd, p, n);
        if (w < 0 && errno != EAGAIN) {
            drop(fd);
            return;
        }
        if (w < 0)
            w = 0;
        if ((size_t)w == n)
            return;
    }
    s->out = realloc(s->out, s->outlen + n - (size_t)w);
    memcpy(s->out + s->outlen, (const uint8_t *)p + w, n - (size_t)w);
    if (s->outlen == 0)
        watch(fd, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
    s->outlen += (uint32_t)(n - (size_t)w);
}

static void flush_out(int fd)
{
    struct slot *s = &slots[fd];
    ssize_t w = write(fd, s->out, s->outlen);
    if (w < 0) {
        if (errno != EAGAIN)
            drop(fd);
        return;
    }
    memmove(s->out, s->out + w, s->outlen - (size_t)w);
    s->outlen -= (uint32_t)w;
    if (s->outlen == 0) {
        free(s->out);
        s->out = NULL;
        watch(fd, EPOLLIN, EPOLL_CTL_MOD);
    }
}

/* Returns bytes consumed, or -1 to drop the connection. */
static long on_handshake(int fd, const uint8_t *p, size_t n)
{
    const uint8_t *end = memmem(p, n, "\r\n\r\n", 4);
    if (!end)
        return n > 8192 ? -1 : 0;
    const char *k = memmem(p, (size_t)(end - p), "Sec-WebSocket-Key:", 18);
    if (!k)
        return -1;
    k += 18;
    while (*k == ' ')
        k++;
    const char *ke = memchr(k, '\r', (size_t)((const char *)end + 2 - k));
    char accept[WS_ACCEPT_LEN + 1], resp[256];
    if (!ke || ws_accept_key(k, (size_t)(ke - k), accept) < 0)
        return -1;
    int rl = snprintf(resp, sizeof(resp),
                      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                      accept);
    send_bytes(fd, resp, (size_t)rl);
    slots[fd].kind = K_OPEN;
    slots[fd].pos = nopen;
    open_fds[nopen++] = fd;
    return (long)(end - p) + 4;
}

static long on_frames(int fd, uint8_t *p, size_t n)
{
    size_t used = 0;
    while (used < n) {
        struct ws_frame f;
        int rc = ws_parse_frame(p + used, n - used, 1, BUF, &f);
        if (rc == WS_AGAIN)
            break;
        if (rc == WS_ERROR)
            return -1;
        if (n - used < f.header_len + f.payload_len)
            break;
        uint8_t *pl = p + used + f.header_len;
        size_t plen = (size_t)f.payload_len;
        if (f.opcode == WS_OP_CLOSE)
            return -1;
        if (f.opcode != WS_OP_PONG) {
            ws_unmask(pl, plen, f.mask, 0);
            if (wlen + WS_MAX_FRAME_HEADER + plen > sizeof(wbuf)) {
                send_bytes(fd, wbuf, wlen);
                wlen = 0;
            }
            wlen += ws_frame_header(wbuf + wlen, f.opcode == WS_OP_PING ? WS_OP_PONG : f.opcode,
                                    f.fin, plen);
            memcpy(wbuf + wlen, pl, plen);
            wlen += plen;
        }
        used += f.header_len + plen;
    }
    if (wlen)
        send_bytes(fd, wbuf, wlen);
    wlen = 0;
    if (slots[fd].kind == K_FREE)
        return -1;
    return (long)used;
}

/* A router message: its payload as one frame to every open WebSocket. */
static long on_publish(const uint8_t *p, size_t n)
{
    size_t used = 0;
    while (used < n) {
        struct rmsg m;
        size_t len;
        int rc = rmsg_decode(p + used, n - used, BUF, &m, &len);
        if (rc == RMSG_NEED_MORE)
            break;
        if (rc != RMSG_OK)
            return -1;
        if (m.type == RMSG_SEND_ALL || m.type == RMSG_CH_PUB) {
            wlen += ws_frame_header(wbuf + wlen, WS_OP_TEXT, 1, m.len);
            memcpy(wbuf + wlen, m.d, m.len);
            wlen += m.len;
        }
        used += len;
    }
    for (int i = nopen - 1; wlen && i >= 0; i--) /* backwards: drop() may swap in the last */
        send_bytes(open_fds[i], wbuf, wlen);
    wlen = 0;
    return (long)used;
}

/* ---- -m fcgi: the gateway's socket work, nothing else ---- */

#define FCGI_ID 1
#define FCGI_MAX_BUFFERED (1u << 20) /* a client's unsent input or one reply; more drops it */
#define FCGI_READ_ROOM 4096          /* free space kept in a buffer before each read */

/* What fooking sends with the bench config (FASTCGI_PARAMS in bench/run.sh), in its
 * order: static params, the session's, then EVENT and CONTENT_LENGTH per request. */
static const char *const fcgi_static[][2] = {
    {"SCRIPT_FILENAME", "/var/www/fooking/app/public/index.php"},
    {"REQUEST_METHOD", "POST"},
    {"SERVER_PROTOCOL", "HTTP/1.1"},
};

/* Makes room for at least `want` more bytes in the connection's buffer, which is
 * kept for the connection's life (no allocation per message). */
static int fcgi_room(struct slot *s, uint32_t want)
{
    if (s->incap - s->inlen >= want)
        return 0;
    uint32_t cap = s->incap ? s->incap : 4096;
    while (cap - s->inlen < want)
        cap *= 2;
    if (cap > FCGI_MAX_BUFFERED + BUF)
        return -1;
    uint8_t *p = realloc(s->in, cap);
    if (!p)
        return -1;
    s->in = p;
    s->incap = cap;
    return 0;
}

static void fcgi_pump(int cfd);

/* At accept: the session's constant request head (BEGIN_REQUEST, the PARAMS
 * header patched per message, the params) and its backend connection. */
static int fcgi_open(int cfd, const struct sockaddr_in *peer)
{
    static unsigned long long sid_seq;
    struct slot *c = &slots[cfd];
    char sid[17], addr[INET_ADDRSTRLEN], port[8];
    snprintf(sid, sizeof(sid), "%08x%08llx", (unsigned)getpid(), ++sid_seq);
    inet_ntop(AF_INET, &peer->sin_addr, addr, sizeof(addr));
    snprintf(port, sizeof(port), "%u", ntohs(peer->sin_port));
    c->pre = malloc(512);
    if (!c->pre)
        return -1;
    fcgi_begin_request_encode(c->pre, FCGI_ID, 1);
    size_t n = 16 + FCGI_HEADER_LEN;
    for (size_t i = 0; i < sizeof(fcgi_static) / sizeof(fcgi_static[0]); i++)
        n += fcgi_nv_encode(c->pre + n, fcgi_static[i][0], strlen(fcgi_static[i][0]),
                            fcgi_static[i][1], strlen(fcgi_static[i][1]));
    n += fcgi_nv_encode(c->pre + n, "SESSIONID", 9, sid, 16);
    n += fcgi_nv_encode(c->pre + n, "REMOTE_ADDR", 11, addr, strlen(addr));
    n += fcgi_nv_encode(c->pre + n, "REMOTE_PORT", 11, port, strlen(port));
    n += fcgi_nv_encode(c->pre + n, "EVENT", 5, "0", 1);
    c->prelen = (uint32_t)n;

    int bfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    if (bfd < 0)
        return -1;
    if (bfd >= nslots) {
        close(bfd);
        return -1;
    }
    setsockopt(bfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    int rc = connect(bfd, (struct sockaddr *)&backend_addr, sizeof(backend_addr));
    if (rc < 0 && errno != EINPROGRESS) {
        fprintf(stderr, "baseline: backend: connect: %s\n", strerror(errno));
        close(bfd);
        return -1;
    }
    slots[bfd].kind = rc == 0 ? K_BACKEND : K_CONNECTING;
    slots[bfd].peer = cfd + 1;
    c->peer = bfd + 1;
    watch(bfd, rc == 0 ? EPOLLIN : EPOLLIN | EPOLLOUT, EPOLL_CTL_ADD);
    return 0;
}

static void fcgi_connected(int bfd)
{
    int err = 0;
    socklen_t l = sizeof(err);
    if (getsockopt(bfd, SOL_SOCKET, SO_ERROR, &err, &l) < 0 || err) {
        fprintf(stderr, "baseline: backend: connect: %s\n", strerror(err));
        drop(bfd);
        return;
    }
    slots[bfd].kind = K_BACKEND;
    watch(bfd, EPOLLIN, EPOLL_CTL_MOD);
    fcgi_pump(slots[bfd].peer - 1);
}

/* Sends the client's next complete message to its backend connection, if that
 * has no request out: the whole request in one write. */
static void fcgi_pump(int cfd)
{
    struct slot *c = &slots[cfd];
    int bfd = c->peer - 1;
    struct slot *b = &slots[bfd];
    if (b->kind != K_BACKEND || b->busy || c->inlen < 4)
        return;
    uint32_t len = (uint32_t)c->in[0] << 24 | (uint32_t)c->in[1] << 16 |
                   (uint32_t)c->in[2] << 8 | c->in[3];
    if (len > BUF) {
        drop(cfd);
        return;
    }
    if (c->inlen < 4 + len)
        return;
    memcpy(wbuf, c->pre, c->prelen);
    size_t n = c->prelen;
    char num[16];
    int nl = snprintf(num, sizeof(num), "%u", len);
    n += fcgi_nv_encode(wbuf + n, "CONTENT_LENGTH", 14, num, (size_t)nl);
    fcgi_header_encode(wbuf + 16, FCGI_PARAMS, FCGI_ID, (uint16_t)(n - 16 - FCGI_HEADER_LEN), 0);
    fcgi_header_encode(wbuf + n, FCGI_PARAMS, FCGI_ID, 0, 0);
    n += FCGI_HEADER_LEN;
    for (uint32_t off = 0; off < len;) {
        uint32_t chunk = len - off > FCGI_MAX_CONTENT ? FCGI_MAX_CONTENT : len - off;
        fcgi_header_encode(wbuf + n, FCGI_STDIN, FCGI_ID, (uint16_t)chunk, 0);
        memcpy(wbuf + n + FCGI_HEADER_LEN, c->in + 4 + off, chunk);
        n += FCGI_HEADER_LEN + chunk;
        off += chunk;
    }
    fcgi_header_encode(wbuf + n, FCGI_STDIN, FCGI_ID, 0, 0);
    n += FCGI_HEADER_LEN;
    c->inlen -= 4 + len;
    memmove(c->in, c->in + 4 + len, c->inlen);
    b->busy = 1;
    send_bytes(bfd, wbuf, n);
}

/* One read into the slot's input: 1 with new bytes, 0 with none yet, -1 when
 * the connection was dropped (EOF, error, no room). */
static int fcgi_read(int fd)
{
    struct slot *s = &slots[fd];
    if (fcgi_room(s, FCGI_READ_ROOM) < 0) {
        drop(fd);
        return -1;
    }
    ssize_t r = read(fd, s->in + s->inlen, s->incap - s->inlen);
    if (r == 0 || (r < 0 && errno != EAGAIN)) {
        drop(fd);
        return -1;
    }
    if (r < 0)
        return 0;
    s->inlen += (uint32_t)r;
    return 1;
}

static void fcgi_client_readable(int fd)
{
    if (fcgi_read(fd) > 0)
        fcgi_pump(fd);
}

/* If the backend's buffer holds a whole reply (its records up to END_REQUEST),
 * writes the body (STDOUT after the CGI head) to the client as one length frame,
 * sends that client's next request, and returns 1; 0 when the reply is not
 * complete yet or the connections were dropped. */
static int fcgi_reply(int bfd)
{
    struct slot *b = &slots[bfd];
    struct fcgi_header h;
    size_t off = 0, end = 0, rec;
    while (!end) {
        if (fcgi_header_decode(b->in + off, b->inlen - off, &h) != FCGI_OK) {
            if (b->inlen - off >= FCGI_HEADER_LEN)
                drop(bfd);
            return 0;
        }
        rec = FCGI_HEADER_LEN + (size_t)h.content_length + h.padding_length;
        if (b->inlen - off < rec)
            return 0;
        off += rec;
        if (h.type == FCGI_END_REQUEST)
            end = off;
    }
    struct cgi_parser cp;
    cgi_parser_init(&cp);
    size_t n = 4;
    for (off = 0; off < end; off += rec) {
        fcgi_header_decode(b->in + off, end - off, &h);
        rec = FCGI_HEADER_LEN + (size_t)h.content_length + h.padding_length;
        if (h.type != FCGI_STDOUT)
            continue;
        const uint8_t *p = b->in + off + FCGI_HEADER_LEN;
        size_t len = h.content_length;
        if (!cp.done) {
            long hl = cgi_parser_feed(&cp, p, len);
            if (hl < 0) {
                drop(bfd);
                return 0;
            }
            p += hl;
            len -= (size_t)hl;
        }
        if (cp.done && len) {
            if (n + len > sizeof(wbuf)) {
                drop(bfd);
                return 0;
            }
            memcpy(wbuf + n, p, len);
            n += len;
        }
    }
    uint32_t blen = (uint32_t)(n - 4);
    wbuf[0] = (uint8_t)(blen >> 24);
    wbuf[1] = (uint8_t)(blen >> 16);
    wbuf[2] = (uint8_t)(blen >> 8);
    wbuf[3] = (uint8_t)blen;
    b->inlen -= (uint32_t)end;
    memmove(b->in, b->in + end, b->inlen);
    b->busy = 0;
    int cfd = b->peer - 1;
    if (cp.done)
        send_bytes(cfd, wbuf, n);
    if (slots[cfd].kind != K_FCLIENT)
        return 0;
    fcgi_pump(cfd);
    return slots[bfd].kind == K_BACKEND;
}

static void fcgi_backend_readable(int fd)
{
    if (fcgi_read(fd) > 0)
        while (fcgi_reply(fd))
            ;
}

static void on_readable(int fd)
{
    struct slot *s = &slots[fd];
    if (s->kind == K_FCLIENT) {
        fcgi_client_readable(fd);
        return;
    }
    if (s->kind == K_BACKEND) {
        fcgi_backend_readable(fd);
        return;
    }
    uint8_t *p = rbuf;
    size_t have = 0;
    if (s->inlen) { /* rare: a message split across reads */
        memcpy(rbuf, s->in, s->inlen);
        have = s->inlen;
        free(s->in);
        s->in = NULL;
        s->inlen = 0;
    }
    ssize_t r = read(fd, rbuf + have, sizeof(rbuf) - have);
    if (r == 0 || (r < 0 && errno != EAGAIN)) {
        drop(fd);
        return;
    }
    if (r < 0)
        r = 0;
    size_t n = have + (size_t)r;
    if (mode == M_LENGTH) {
        send_bytes(fd, p, n);
        return;
    }
    long used = 0;
    if (s->kind == K_HANDSHAKE) {
        used = on_handshake(fd, p, n);
        if (used > 0 && (size_t)used < n) {
            long more = on_frames(fd, p + used, n - (size_t)used);
            used = more < 0 ? -1 : used + more;
        }
    } else if (s->kind == K_OPEN) {
        used = on_frames(fd, p, n);
    } else if (s->kind == K_PUB) {
        used = on_publish(p, n);
    }
    if (used < 0 || (used == 0 && n == sizeof(rbuf))) {
        drop(fd);
        return;
    }
    if ((size_t)used < n && slots[fd].kind != K_FREE) {
        s->inlen = (uint32_t)(n - (size_t)used);
        s->in = malloc(s->inlen);
        memcpy(s->in, p + used, s->inlen);
    }
}

static void on_accept(int lfd, int kind)
{
    for (int i = 0; i < 64; i++) {
        struct sockaddr_in sa;
        socklen_t sl = sizeof(sa);
        int fd = accept4(lfd, (struct sockaddr *)&sa, &sl, SOCK_NONBLOCK);
        if (fd < 0)
            return;
        if (fd >= nslots) {
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        slots[fd].kind = (uint8_t)kind;
        watch(fd, EPOLLIN, EPOLL_CTL_ADD);
        if (kind == K_FCLIENT && fcgi_open(fd, &sa) < 0)
            drop(fd);
    }
}

int main(int argc, char **argv)
{
    const char *addr = "127.0.0.1:9100", *backend = NULL;
    int workers = 1, pubport = 0, o;
    while ((o = getopt(argc, argv, "m:l:b:P:w:")) != -1) {
        switch (o) {
        case 'm':
            mode = strcmp(optarg, "ws") == 0 ? M_WS : strcmp(optarg, "fcgi") == 0 ? M_FCGI : M_LENGTH;
            if (mode == M_LENGTH && strcmp(optarg, "length") != 0)
                goto usage;
            break;
        case 'l': addr = optarg; break;
        case 'b': backend = optarg; break;
        case 'P': pubport = atoi(optarg); break;
        case 'w': workers = atoi(optarg); break;
        default:
        usage:
            fprintf(stderr, "usage: baseline -m length|ws|fcgi -l HOST:PORT [-b BACKEND_HOST:PORT] "
                            "[-P PORT] [-w N]\n");
            return 2;
        }
    }
    mode_ws = mode == M_WS;
    if (mode == M_FCGI) {
        const char *bc = backend ? strrchr(backend, ':') : NULL;
        char bhost[64];
        if (!bc || bc - backend >= (long)sizeof(bhost)) {
            fprintf(stderr, "baseline: -m fcgi wants -b BACKEND_HOST:PORT\n");
            return 2;
        }
        memcpy(bhost, backend, (size_t)(bc - backend));
        bhost[bc - backend] = '\0';
        backend_addr.sin_family = AF_INET;
        backend_addr.sin_port = htons((uint16_t)atoi(bc + 1));
        if (inet_pton(AF_INET, bhost, &backend_addr.sin_addr) != 1) {
            fprintf(stderr, "baseline: bad backend address %s\n", backend);
            return 2;
        }
    }
    char host[64];
    const char *colon = strrchr(addr, ':');
    if (!colon || colon - addr >= (long)sizeof(host))
        return 2;
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    int port = atoi(colon + 1), idx = 0;
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    nslots = (int)rl.rlim_cur;
    for (int i = 1; i < workers; i++)
        if (fork() == 0) {
            prctl(PR_SET_PDEATHSIG, SIGTERM);
            idx = i;
            break;
        }
    slots = calloc((size_t)nslots, sizeof(*slots));
    open_fds = calloc((size_t)nslots, sizeof(int));
    epfd = epoll_create1(0);
    int lfd = listen_on(host, port), pfd = -1;
    slots[lfd].kind = K_LISTEN;
    watch(lfd, EPOLLIN, EPOLL_CTL_ADD);
    if (pubport) {
        pfd = listen_on(host, pubport + idx);
        slots[pfd].kind = K_PUBLISTEN;
        watch(pfd, EPOLLIN, EPOLL_CTL_ADD);
    }
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(epfd, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            switch (slots[fd].kind) {
            case K_LISTEN:
                on_accept(fd, mode == M_WS ? K_HANDSHAKE : mode == M_FCGI ? K_FCLIENT : K_OPEN);
                break;
            case K_CONNECTING: fcgi_connected(fd); break;
            case K_PUBLISTEN: on_accept(fd, K_PUB); break;
            case K_FREE: break;
            default:
                if (evs[i].events & EPOLLOUT && slots[fd].outlen)
                    flush_out(fd);
                if (slots[fd].kind != K_FREE && evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                    on_readable(fd);
            }
        }
    }
}
