/* loop.c - event loop settings shared by the gateway workers and the router.
 *
 * With the epoll changelist, libevent gathers the interest changes of a loop
 * iteration (a bufferevent that gets output enables EV_WRITE, and disables it
 * once drained) and applies only the net change when it next polls: one
 * request/reply round trip otherwise costs several epoll_ctl calls per socket.
 * Safe here because no two of our events share a dup()ed file description. */
#include "loop.h"

#include <malloc.h>
#include <stdlib.h>

#include <event2/event.h>

/* glibc gives the top of the heap back as soon as 128 KiB of it are free, so a
 * process whose output is written and freed every turn shrinks and regrows its
 * heap all the time, and pays page faults for every regrowth (a fifth of the
 * router's time under fan-out). The free top is kept up to LOOP_TRIM_KEEP and
 * handed back every LOOP_TRIM_SECONDS instead (loop_trim_new). */
#define LOOP_TRIM_KEEP (16 << 20)
#define LOOP_TOP_PAD   (1 << 20)

/* libevent's buffers free their last block of data (a "chain") whenever they
 * are drained and take a new one when data comes again, so a request and its
 * reply cost five malloc/free pairs of 1 to 4 KiB: the client's input, the
 * backend's output, its input, the reply and the client's output. Blocks of
 * those sizes go back to a few small per-size stacks instead, and the next
 * chain comes from there: in steady state the allocator is not called per
 * message. At most LOOP_CACHE_KEEP blocks of each power of two from 1 KiB to
 * 16 KiB are kept (about half a MiB at most); the rest is plain malloc. The
 * process is single-threaded, like its loop. */
#define LOOP_CACHE_MIN  10 /* 1 KiB */
#define LOOP_CACHE_MAX  14 /* 16 KiB */
#define LOOP_CACHE_KEEP 128

struct loop_blocks {
    void *block[LOOP_CACHE_KEEP];
    int n;
    int low; /* the fewest held since the last loop_mem_trim: never needed */
};
static struct loop_blocks loop_cache[LOOP_CACHE_MAX - LOOP_CACHE_MIN + 1];

static void *loop_mem_malloc(size_t n)
{
    if (n > (1u << (LOOP_CACHE_MIN - 1)) && n <= (1u << LOOP_CACHE_MAX)) {
        int k = LOOP_CACHE_MIN;
        while ((1u << k) < n) /* the smallest size that holds n */
            k++;
        struct loop_blocks *c = &loop_cache[k - LOOP_CACHE_MIN];
        if (c->n > 0) {
            void *p = c->block[--c->n];
            if (c->n < c->low)
                c->low = c->n;
            return p;
        }
        n = (size_t)1 << k; /* so that it can serve any request of its size later */
    }
    return malloc(n);
}

static void loop_mem_free(void *p)
{
    if (p == NULL)
        return;
    size_t u = malloc_usable_size(p);
    if (u >= (1u << LOOP_CACHE_MIN) && u < (2u << LOOP_CACHE_MAX)) {
        int k = LOOP_CACHE_MAX;
        while ((1u << k) > u) /* the largest size it holds */
            k--;
        if (loop_cache[k - LOOP_CACHE_MIN].n < LOOP_CACHE_KEEP) {
            loop_cache[k - LOOP_CACHE_MIN].block[loop_cache[k - LOOP_CACHE_MIN].n++] = p;
            return;
        }
    }
    free(p);
}

void loop_mem_trim(void)
{
    for (size_t k = 0; k < sizeof(loop_cache) / sizeof(loop_cache[0]); k++) {
        /* What was never taken since the last call goes back to malloc: a
         * loop under load keeps what it cycles, an idle one keeps nothing. */
        while (loop_cache[k].low > 0) {
            free(loop_cache[k].block[--loop_cache[k].n]);
            loop_cache[k].low--;
        }
        loop_cache[k].low = loop_cache[k].n;
    }
}

size_t loop_mem_cached(void)
{
    size_t n = 0;
    for (size_t k = 0; k < sizeof(loop_cache) / sizeof(loop_cache[0]); k++)
        n += (size_t)loop_cache[k].n;
    return n;
}

void loop_mem_init(void)
{
    event_set_mem_functions(loop_mem_malloc, realloc, loop_mem_free);
}

struct event_base *loop_new(void)
{
    struct event_config *cfg = event_config_new();
    if (cfg == NULL)
        return NULL;
    event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    mallopt(M_TRIM_THRESHOLD, LOOP_TRIM_KEEP);
    mallopt(M_TOP_PAD, LOOP_TOP_PAD);
    struct event_base *base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    return base;
}

static void loop_trim_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    loop_mem_trim();
    malloc_trim(0);
}

struct event *loop_trim_new(struct event_base *base)
{
    struct event *ev = event_new(base, -1, EV_PERSIST, loop_trim_cb, NULL);
    struct timeval tv = {LOOP_TRIM_SECONDS, 0};
    if (ev)
        event_add(ev, &tv);
    return ev;
}
