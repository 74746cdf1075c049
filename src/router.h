/* router.h - router mode (ROUTER = 1, DESIGN §7): one process, one loop, that
 * keeps which gateway link holds each session and each channel, and fans backend
 * commands out to exactly the links concerned. */
#ifndef FOOKING_ROUTER_H
#define FOOKING_ROUTER_H

#include "config.h"

struct router;

/* A service on the router's loop beside the binary protocol (the HTTP API,
 * router_http.c): started once the router listens, when its config asks for
 * it; stopped first when the router stops. The router knows it only by this. */
struct router_service {
    int (*wanted)(const struct config *cfg);
    void *(*start)(struct router *r); /* NULL: it cannot (logged); the router stops */
    void (*stop)(void *state);
};

/* Runs the router until SIGINT/SIGTERM; returns the process exit status.
 * http may be NULL. */
int router_run(const struct config *cfg, const struct router_service *http);

#endif
