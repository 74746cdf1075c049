/* router.h - router mode (ROUTER = 1, DESIGN §7): one process, one loop, that
 * keeps which gateway link holds each session and each channel, and fans backend
 * commands out to exactly the links concerned. */
#ifndef FOOKING_ROUTER_H
#define FOOKING_ROUTER_H

#include "config.h"

/* Runs the router until SIGINT/SIGTERM; returns the process exit status. */
int router_run(const struct config *cfg);

#endif
