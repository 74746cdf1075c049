/* proc.h - process setup shared by the gateway master and the router: the
 * listening socket, the pid file, USER/GROUP. */
#ifndef FOOKING_PROC_H
#define FOOKING_PROC_H

#include <pwd.h>
#include <sys/types.h>

#include "config.h"

/* Opens a listening TCP socket on host:port (nonblocking); -1 with a logged error. */
int proc_listen(const char *host, int port);
/* True if the socket is bound to 127.0.0.0/8, ::1 or ::ffff:127.0.0.0/104. */
int proc_is_loopback(int fd);
/* Writes the pid file; refuses when it names a live process. 0 or -1. */
int proc_pidfile_write(const char *path);
/* The uid and gid USER/GROUP name ((uid_t)-1 / (gid_t)-1 for what is not set),
 * and the passwd entry of USER if pwp is not NULL. 0, or -1 (logged). */
int proc_user_ids(const struct config *cfg, uid_t *uid, gid_t *gid, struct passwd **pwp);
/* Switches to USER/GROUP when set and running as root. 0 or -1 (logged). */
int proc_drop_privileges(const struct config *cfg);

#endif
