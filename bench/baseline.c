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
 *
 * Plain epoll, level-triggered, no libevent, no per-message allocation. -w N
 * forks N processes, each with its own SO_REUSEPORT listener (the kernel
 * spreads connections between them), as the gateway has N workers.
 * Usage: baseline -m length|ws -l HOST:PORT [-P PORT] [-w N] */
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

#include "../src/rmsg.h"
#include "../src/ws.h"

#define BUF 65536

enum kind { K_FREE, K_LISTEN, K_PUBLISTEN, K_HANDSHAKE, K_OPEN, K_PUB };

struct slot {
    uint8_t kind;
    uint32_t inlen, outlen;  /* partial input kept; output the socket did not take */
    int pos;                 /* index in open_fds while an open WebSocket */
    uint8_t *in, *out;       /* allocated only while something is pending */
};

static struct slot *slots;
static int nslots, epfd;
static int mode_ws;
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
    free(s->in);
    free(s->out);
    memset(s, 0, sizeof(*s));
    close(fd);
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

static void on_readable(int fd)
{
    struct slot *s = &slots[fd];
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
    if (!mode_ws) {
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
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
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
    }
}

int main(int argc, char **argv)
{
    const char *addr = "127.0.0.1:9100";
    int workers = 1, pubport = 0, o;
    while ((o = getopt(argc, argv, "m:l:P:w:")) != -1) {
        switch (o) {
        case 'm': mode_ws = strcmp(optarg, "ws") == 0; break;
        case 'l': addr = optarg; break;
        case 'P': pubport = atoi(optarg); break;
        case 'w': workers = atoi(optarg); break;
        default:
            fprintf(stderr, "usage: baseline -m length|ws -l HOST:PORT [-P PORT] [-w N]\n");
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
            case K_LISTEN: on_accept(fd, mode_ws ? K_HANDSHAKE : K_OPEN); break;
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
