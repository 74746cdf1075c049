/* loop.c - event loop settings shared by the gateway workers and the router.
 *
 * With the epoll changelist, libevent gathers the interest changes of a loop
 * iteration (a bufferevent that gets output enables EV_WRITE, and disables it
 * once drained) and applies only the net change when it next polls: one
 * request/reply round trip otherwise costs several epoll_ctl calls per socket.
 * Safe here because no two of our events share a dup()ed file description. */
#include "loop.h"

#include <malloc.h>

struct event_base *loop_new(void)
{
    struct event_config *cfg = event_config_new();
    if (cfg == NULL)
        return NULL;
    event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
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
