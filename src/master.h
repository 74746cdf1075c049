/* master.h - the gateway's master process: forks WORKER_NUM workers on the
 * listening socket (proc.h opens it) and supervises them. */
#ifndef FOOKING_MASTER_H
#define FOOKING_MASTER_H

#include "config.h"

/* Runs the gateway; returns the process exit status. */
int master_run(struct config *cfg);

#endif
