/* worker.h - one worker process: its event loop, clients, backend pool and
 * links to the router or the bus. Workers share nothing but the listening sockets and the
 * shm block. What the worker's modules see of it is in wctx.h. */
#ifndef FOOKING_WORKER_H
#define FOOKING_WORKER_H

#include "config.h"
#include "shm.h"
#include "wctx.h"

/* Runs worker `id` on the inherited listening socket; returns the exit status. */
int worker_run(struct config *cfg, int id, int listen_fd, struct shm_block *shm, void *ssl_ctx);

#endif
