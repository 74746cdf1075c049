/* gw_mem.c - what a gateway worker keeps per bound uid and per channel
 * membership, at 100K sessions: malloc'd bytes in use (glibc mallinfo2, chunk
 * overhead included) before and after each step, over sessions built as the
 * worker builds them (a client with its params block: SESSIONID, REMOTE_ADDR,
 * REMOTE_PORT, a Host header).
 *   make build/gw_mem && build/gw_mem [sessions] */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "channel.h"
#include "client.h"
#include "config.h"
#include "hmap.h"
#include "user.h"
#include "worker.h"

static size_t in_use(void)
{
    struct mallinfo2 mi = mallinfo2();

    return mi.uordblks + mi.hblkhd;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 100000;
    static struct worker w;
    static struct config cfg;
    char uid[32], ch[32];

    cfg.fastcgi_prefix = "";
    cfg.channels_per_client = 128;
    cfg.session_max_size = 4096;
    w.cfg = &cfg;
    TAILQ_INIT(&w.clients);
    w.by_uid = hmap_new(0);
    w.channels = hmap_new(0);
    struct client *cs = calloc(n, sizeof(*cs));
    if (!cs || !w.by_uid || !w.channels)
        return 1;
    for (size_t i = 0; i < n; i++) {
        struct client *c = &cs[i];
        snprintf(c->sid, sizeof(c->sid), "%016zx", i);
        LIST_INIT(&c->chans);
        c->params = fcgi_params_new(NULL, 0);
        fcgi_params_add(&c->params, "SESSIONID", c->sid, 16);
        fcgi_params_add(&c->params, "REMOTE_ADDR", "127.0.0.1", 9);
        fcgi_params_add(&c->params, "REMOTE_PORT", "40000", 5);
        fcgi_params_add(&c->params, "HTTP_HOST", "127.0.0.1:9000", 14);
        fcgi_params_fit(&c->params);
    }
    size_t m0 = in_use();
    for (size_t i = 0; i < n; i++) { /* a user of its own per session */
        int l = snprintf(uid, sizeof(uid), "user-%zu", i);
        user_bind(&w, &cs[i], uid, (size_t)l);
    }
    size_t m1 = in_use();
    for (size_t i = 0; i < n; i++) /* every session in one of 100 channels (1,000 members each) */
        channel_join(&w, &cs[i], ch, (size_t)snprintf(ch, sizeof(ch), "room-%zu", i % 100));
    size_t m2 = in_use();
    for (size_t i = 0; i < n; i++) /* and in one channel of its own */
        channel_join(&w, &cs[i], ch, (size_t)snprintf(ch, sizeof(ch), "own-%zu", i));
    size_t m3 = in_use();
    printf("RESULT label=mem-gateway scenario=mem n=%zu uid_bytes=%.0f membership_bytes=%.0f "
           "membership_new_channel_bytes=%.0f\n",
           n, (double)(m1 - m0) / n, (double)(m2 - m1) / n, (double)(m3 - m2) / n);
    return 0;
}
