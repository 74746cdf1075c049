/* proc.h - process setup shared by the gateway master and the router: the
 * listening socket, the pid file, USER/GROUP. */
#ifndef FOOKING_PROC_H
#define FOOKING_PROC_H

#include <pwd.h>
#include <signal.h>
#include <sys/types.h>

#include "config.h"

/* The signals a fooking process handles (TERM, INT, QUIT, HUP, USR1, USR2,
 * CHLD): kept blocked until their handlers exist, since the default action
 * of any of them would end the process. */
void proc_signal_set(sigset_t *set);
/* Opens a listening TCP socket on host:port (nonblocking); -1 with a logged error. */
int proc_listen(const char *host, int port);
/* The same with SO_REUSEPORT: a socket that is not handed over in an upgrade
 * (the router's HTTP_PORT), which the successor binds while this one still
 * listens. */
int proc_listen_shared(const char *host, int port);
/* True if the socket is bound to 127.0.0.0/8, ::1 or ::ffff:127.0.0.0/104. */
int proc_is_loopback(int fd);
/* Writes the pid file; refuses when it names a live process. 0 or -1. */
int proc_pidfile_write(const char *path);
/* The uid and gid USER/GROUP name ((uid_t)-1 / (gid_t)-1 for what is not set),
 * and the passwd entry of USER if pwp is not NULL. 0, or -1 (logged). */
int proc_user_ids(const struct config *cfg, uid_t *uid, gid_t *gid, struct passwd **pwp);
/* Gives LOG_FILE to USER/GROUP (when set, a path, and running as root): the
 * root process opens, and on reopen creates, the file; what runs as USER must
 * be able to open it again after a rotation, as nginx does for its workers. */
void proc_log_owner(const struct config *cfg);
/* Switches to USER/GROUP when set and running as root. 0 or -1 (logged). */
int proc_drop_privileges(const struct config *cfg);

/* Binary upgrade (SIGUSR2), as nginx does it: the running process starts the
 * binary again on the same config and hands it the listening socket in the
 * environment; the new one says when it serves; the old one then goes. */
#define PROC_UPGRADE_SECONDS 10                  /* a successor must serve by then */
#define PROC_ENV_LISTEN_FD   "FOOKING_LISTEN_FD" /* the listening socket, inherited */
#define PROC_ENV_READY_FD    "FOOKING_READY_FD"  /* write one byte there once serving */
#define PROC_ENV_SID_AFTER   "FOOKING_SID_AFTER" /* ms: start every SID clock past this */

/* The descriptor named by environment variable `name` (then unset, and the
 * descriptor close-on-exec), or -1. */
int proc_env_fd(const char *name);
/* The listening socket a predecessor handed over (nonblocking), or -1. */
int proc_inherited_listener(void);
/* FOOKING_SID_AFTER (then unset), or 0. */
unsigned long long proc_sid_after(void);
/* The running binary and the config file by absolute path: what a successor
 * is started from (DAEMONIZE changes the directory). */
void proc_upgrade_paths(const char *config, char *exe, size_t exelen, char *conf, size_t conflen);
/* Renames PID_FILE to PID_FILE.oldbin and starts `exe conf` with listen_fd
 * handed over and (if sid_after) FOOKING_SID_AFTER; the child gets `mask` as
 * its signal mask. Returns its pid and the read end of its ready pipe in
 * *ready_fd, or -1 (logged, PID_FILE restored). */
pid_t proc_upgrade_spawn(const char *who, const char *exe, const char *conf, int listen_fd,
                         const char *pid_file, unsigned long long sid_after, const sigset_t *mask,
                         int *ready_fd);
/* The successor says it serves (and closes the pipe). */
void proc_upgrade_ready(int ready_fd);
/* The upgrade failed: PID_FILE.oldbin back to PID_FILE. */
void proc_upgrade_restore_pidfile(const char *pid_file);
/* The upgrade succeeded and this process goes: PID_FILE.oldbin removed. */
void proc_upgrade_remove_oldbin(const char *pid_file);

#endif
