/* master.h - the gateway's master process: opens the listening socket, forks
 * WORKER_NUM workers and supervises them. */
#ifndef FOOKING_MASTER_H
#define FOOKING_MASTER_H

#include "config.h"

/* Runs the gateway; returns the process exit status. */
int master_run(struct config *cfg);
/* Opens a listening TCP socket on host:port (nonblocking); -1 with a logged error. */
int master_listen(const char *host, int port);
/* Writes the pid file; refuses when it names a live process. 0 or -1. */
int pidfile_write(const char *path);
/* Switches to USER/GROUP when set and running as root. 0 or -1 (logged). */
int master_drop_privileges(const struct config *cfg);

#endif
