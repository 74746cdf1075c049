/* loop.c - event loop settings shared by the gateway workers and the router.
 *
 * With the epoll changelist, libevent gathers the interest changes of a loop
 * iteration (a bufferevent that gets output enables EV_WRITE, and disables it
 * once drained) and applies only the net change when it next polls: one
 * request/reply round trip otherwise costs several epoll_ctl calls per socket.
 * Safe here because no two of our events share a dup()ed file description. */
#include "loop.h"

#include <malloc.h>

/* glibc gives the top of the heap back as soon as 128 KiB of it are free, so a
 * process whose output is written and freed every turn shrinks and regrows its
 * heap all the time, and pays page faults for every regrowth (a fifth of the
 * router's time under fan-out). The free top is kept up to LOOP_TRIM_KEEP and
 * handed back every LOOP_TRIM_SECONDS instead (loop_trim_new). */
#define LOOP_TRIM_KEEP (16 << 20)
#define LOOP_TOP_PAD   (1 << 20)

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
