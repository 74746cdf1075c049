/* master.c - the gateway master: it owns the listening socket and the worker
 * processes and does nothing else, so nothing a client sends can reach it.
 *
 * Signals are blocked and taken synchronously with sigtimedwait(): no handler
 * runs at an arbitrary point, and the wait's timeout doubles as the respawn
 * back-off timer. A worker that dies is replaced at once; one that keeps dying
 * young is replaced after a growing delay (0.1 s doubling to 10 s). */
#include "master.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backoff.h"
#include "log.h"
#include "proc.h"
#include "proctitle.h"
#include "shm.h"
#include "sid.h"
#include "tls.h"
#include "worker.h"

/* A stopping worker paces its close events for up to 10 s (worker.c). */
#define MASTER_STOP_GRACE_SECONDS 12
/* The respawn delay of a worker that keeps dying within a second of starting. */
#define MASTER_RESPAWN_MIN 0.1
#define MASTER_RESPAWN_MAX 10.0

struct slot {
    pid_t pid;
    double started;         /* monotonic seconds */
    double respawn_at;      /* when pid == 0 and not stopping */
    struct backoff respawn; /* grows while it keeps dying within a second of starting */
};

static double master_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static pid_t master_spawn(struct config *cfg, int id, int fd, struct shm_block *shm, void *ssl_ctx,
                          const sigset_t *oldmask)
{
    pid_t pid = fork();
    if (pid < 0) {
        log_err("fork worker %d: %s", id, strerror(errno));
        return -1;
    }
    if (pid > 0)
        return pid;
    /* Child: default dispositions. The master's signals stay blocked until
     * worker_run has its handlers: one arriving before would kill the worker. */
    (void)oldmask;
    signal(SIGCHLD, SIG_DFL);
    proctitle_set("fooking: worker %d", id);
    if (proc_drop_privileges(cfg) < 0)
        _exit(2);
    _exit(worker_run(cfg, id, fd, shm, ssl_ctx));
}

/* A binary upgrade under way (SIGUSR2): the new master this one started. */
struct upgrade {
    pid_t pid;       /* 0: none under way */
    int ready_fd;    /* read end: the new master writes one byte once it serves */
    double deadline; /* it must be ready by then, or it is killed */
    int status;      /* its wait status, once it exited */
    int exited;
};

/* A worker is gone: its clients no longer count towards MAX_CLIENT_NUM. */
static void master_reap(struct slot *slots, int n, struct shm_block *shm, int stopping,
                        struct upgrade *up)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        if (up->pid > 0 && pid == up->pid) {
            up->exited = 1;
            up->status = status;
            continue;
        }
        for (int i = 0; i < n; i++) {
            if (slots[i].pid != pid)
                continue;
            int left = atomic_exchange(&shm->workers[i].clients, 0);
            atomic_fetch_sub(&shm->clients, left);
            atomic_store(&shm->workers[i].pid, 0);
            slots[i].pid = 0;
            if (stopping) {
                log_info("worker %d (pid %d) exited", i, (int)pid);
                break;
            }
            if (WIFSIGNALED(status))
                log_err("worker %d (pid %d) killed by signal %d, %d clients lost", i, (int)pid,
                        WTERMSIG(status), left);
            else
                log_err("worker %d (pid %d) exited with status %d, %d clients lost", i, (int)pid,
                        WEXITSTATUS(status), left);
            double now = master_now();
            double delay = 0;
            if (now - slots[i].started < 1.0) {
                delay = backoff_next(&slots[i].respawn);
                log_err("worker %d is crash-looping; restarting in %.1f s", i, delay);
            } else {
                backoff_reset(&slots[i].respawn);
            }
            slots[i].respawn_at = now + delay;
            break;
        }
    }
}

/* USER and GROUP must exist before anything starts: a typo is one clear
 * error at start, not workers dying in a loop. */
static int master_check_user(const struct config *cfg)
{
    if (cfg->user && getpwnam(cfg->user) == NULL) {
        log_err("%s: USER %s: no such user", cfg->file, cfg->user);
        return -1;
    }
    if (cfg->group && getgrnam(cfg->group) == NULL) {
        log_err("%s: GROUP %s: no such group", cfg->file, cfg->group);
        return -1;
    }
    return 0;
}

/* SIGUSR2: start the binary again (perhaps a new one) on the same config,
 * handing it the listening socket; this master goes on serving until the new
 * one says it serves. New SIDs start past what this generation can still
 * hand out (its workers accept until the new master is ready, at most
 * PROC_UPGRADE_SECONDS), so the two never share one. */
static void master_upgrade_start(struct upgrade *up, const struct config *cfg, const char *exe,
                                 const char *conf, int fd, const sigset_t *oldmask)
{
    if (up->pid > 0) {
        log_err("master: upgrade: one is already under way (new master %d)", (int)up->pid);
        return;
    }
    unsigned long long after = sid_now_ms() + (PROC_UPGRADE_SECONDS + 1) * 1000ULL;
    pid_t pid =
        proc_upgrade_spawn("master", exe, conf, fd, cfg->pid_file, after, oldmask, &up->ready_fd);
    if (pid < 0)
        return;
    up->pid = pid;
    up->deadline = master_now() + PROC_UPGRADE_SECONDS;
    up->exited = 0;
}

/* The upgrade did not happen: this master stays the running generation. */
static void master_upgrade_fail(struct upgrade *up, const struct config *cfg, const char *why)
{
    log_err("master: upgrade failed: %s; this master (pid %d) keeps serving", why, (int)getpid());
    if (!up->exited) {
        kill(up->pid, SIGKILL); /* its workers follow it (PR_SET_PDEATHSIG) */
        waitpid(up->pid, NULL, 0);
    }
    close(up->ready_fd);
    proc_upgrade_restore_pidfile(cfg->pid_file);
    up->pid = 0;
}

/* 1 once the new master serves, -1 when it failed (handled), 0 while waiting. */
static int master_upgrade_poll(struct upgrade *up, const struct config *cfg)
{
    char why[96], b;
    struct pollfd pfd = {.fd = up->ready_fd, .events = POLLIN};
    if (poll(&pfd, 1, 0) == 1) {
        if (read(up->ready_fd, &b, 1) == 1) {
            close(up->ready_fd);
            log_info("master: upgrade: new master %d serves; this one stops gracefully",
                     (int)up->pid);
            return 1;
        }
        /* EOF with no byte: it exited, or exec failed; its status tells. */
        if (!up->exited)
            waitpid(up->pid, &up->status, 0), up->exited = 1;
    }
    if (up->exited) {
        if (WIFEXITED(up->status))
            snprintf(why, sizeof(why), "the new master exited with status %d (see its log)",
                     WEXITSTATUS(up->status));
        else
            snprintf(why, sizeof(why), "the new master was killed by signal %d",
                     WTERMSIG(up->status));
        master_upgrade_fail(up, cfg, why);
        return -1;
    }
    if (master_now() >= up->deadline) {
        snprintf(why, sizeof(why), "the new master was not serving within %d s",
                 PROC_UPGRADE_SECONDS);
        master_upgrade_fail(up, cfg, why);
        return -1;
    }
    return 0;
}

int master_run(struct config *cfg)
{
    void *ssl_ctx = NULL;
    /* For an upgrade: the binary and config by absolute path (DAEMONIZE
     * changes the directory; the binary file may be replaced meanwhile). */
    char exe[4096], conf[4096];
    proc_upgrade_paths(cfg->file, exe, sizeof(exe), conf, sizeof(conf));
    int inherited = proc_inherited_listener();
    int ready_fd = proc_env_fd(PROC_ENV_READY_FD);
    unsigned long long sid_after = proc_sid_after();
    if (master_check_user(cfg) < 0)
        return 1;
    if (cfg->ssl) {
        char err[512];
        ssl_ctx = tls_ctx_new(cfg->ssl_cert, cfg->ssl_pkey, err, sizeof(err));
        if (!ssl_ctx) {
            log_err("%s: %s", cfg->file, err);
            return 1;
        }
    }
    int fd = inherited >= 0 ? inherited : proc_listen(cfg->host, cfg->port);
    if (fd < 0) {
        tls_ctx_free(ssl_ctx);
        return 1;
    }
    /* A master started by an upgrade is the old one's child: already detached. */
    if (cfg->daemonize && inherited < 0) {
        if (daemon(0, 0) != 0) {
            log_err("daemonize: %s", strerror(errno));
            return 1;
        }
    }
    if (cfg->pid_file && proc_pidfile_write(cfg->pid_file) < 0)
        return 1;
    struct shm_block *shm = shm_create(cfg->worker_num);
    if (!shm) {
        log_err("shared memory: %s", strerror(errno));
        return 1;
    }
    proctitle_set("fooking: master %s", cfg->file);
    proc_log_owner(cfg);
    shm->master_pid = (int)getpid(); /* after daemon(): the pid the workers will see */
    if (sid_after > 0)               /* past every SID the previous generation can hand out */
        for (int i = 0; i < cfg->worker_num; i++)
            atomic_store(&shm->workers[i].sid_ms, sid_after - SID_EPOCH_MS);

    sigset_t set, oldmask;
    proc_signal_set(&set); /* SIGUSR2's default action would kill us, orphaning workers */
    sigprocmask(SIG_BLOCK, &set, &oldmask);
    signal(SIGPIPE, SIG_IGN);

    int n = cfg->worker_num;
    struct slot slots[SHM_MAX_WORKERS];
    memset(slots, 0, sizeof(slots));
    for (int i = 0; i < n; i++)
        backoff_init(&slots[i].respawn, MASTER_RESPAWN_MIN, MASTER_RESPAWN_MAX);
    log_info("master started (pid %d), listening on %s:%d, %d workers", (int)getpid(), cfg->host,
             cfg->port, n);
    int stopping = 0;
    double stop_deadline = 0;
    struct upgrade up = {0};
    int handed_over = 0; /* an upgrade succeeded: PID_FILE belongs to the new master */
    for (;;) {
        double now = master_now(), next = now + 1.0;
        int alive = 0;
        if (up.pid > 0) {
            int r = master_upgrade_poll(&up, cfg);
            if (r > 0) {
                handed_over = 1;
                up.pid = 0;
                kill(getpid(), SIGQUIT); /* drain as a graceful stop does */
            } else if (r == 0 && now + 0.05 < next) {
                next = now + 0.05;
            }
        }
        if (ready_fd >= 0) {
            int ready = 1;
            for (int i = 0; i < n; i++)
                ready &= slots[i].pid > 0 && atomic_load(&shm->workers[i].ready);
            if (ready) { /* the previous master may go now */
                proc_upgrade_ready(ready_fd);
                ready_fd = -1;
            } else if (now + 0.01 < next) {
                next = now + 0.01;
            }
        }
        for (int i = 0; i < n; i++) {
            if (slots[i].pid > 0) {
                alive++;
                continue;
            }
            if (stopping)
                continue;
            if (slots[i].respawn_at <= now) {
                pid_t pid = master_spawn(cfg, i, fd, shm, ssl_ctx, &oldmask);
                if (pid > 0) {
                    slots[i].pid = pid;
                    slots[i].started = now;
                    alive++;
                } else {
                    slots[i].respawn_at = now + 1.0;
                }
            } else if (slots[i].respawn_at < next) {
                next = slots[i].respawn_at;
            }
        }
        if (stopping) {
            if (alive == 0)
                break;
            if (now >= stop_deadline) {
                for (int i = 0; i < n; i++)
                    if (slots[i].pid > 0) {
                        log_err("worker %d (pid %d) did not stop in time; killing it", i,
                                (int)slots[i].pid);
                        kill(slots[i].pid, SIGKILL);
                    }
                stop_deadline = now + 3600;
            }
            if (stop_deadline < next)
                next = stop_deadline;
        }
        double wait = next - now;
        if (wait < 0.001)
            wait = 0.001;
        struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
        siginfo_t info;
        int sig = sigtimedwait(&set, &info, &ts);
        if (sig < 0)
            continue; /* timeout or EINTR */
        switch (sig) {
        case SIGCHLD:
            master_reap(slots, n, shm, stopping, &up);
            break;
        case SIGTERM:
        case SIGINT:
        case SIGQUIT:
            /* SIGQUIT: graceful (workers spread their closes over
             * GRACEFUL_STOP_TIME); SIGTERM after it makes it a fast stop. */
            if (!stopping || (stopping == SIGQUIT && sig != SIGQUIT)) {
                int graceful = sig == SIGQUIT;
                log_info("master: signal %d, %s", sig, graceful ? "graceful stop" : "stopping");
                stopping = graceful ? SIGQUIT : SIGTERM;
                stop_deadline = master_now() + MASTER_STOP_GRACE_SECONDS
                                + (graceful ? cfg->graceful_stop_time : 0);
                for (int i = 0; i < n; i++)
                    if (slots[i].pid > 0)
                        kill(slots[i].pid, graceful ? SIGQUIT : SIGTERM);
            }
            break;
        case SIGUSR2:
            if (stopping)
                log_err("master: upgrade refused: stopping");
            else if (exe[0] == '\0')
                log_err("master: upgrade refused: cannot tell which binary runs");
            else
                master_upgrade_start(&up, cfg, exe, conf, fd, &oldmask);
            break;
        case SIGHUP: {
            char err[1024];
            struct config fresh;
            if (config_load(&fresh, cfg->file, err, sizeof(err)) < 0) {
                log_err("reload: %s; keeping the running configuration", err);
                break;
            }
            /* The master keeps the new configuration, so a worker it forks
             * later (one replacing a dead worker) runs what the others
             * reloaded. What needs a restart keeps its running value. */
            if (strcmp(fresh.log_file, cfg->log_file) != 0)
                log_open(fresh.log_file, fresh.log_level);
            log_set_level(fresh.log_level);
            char *pid_file = cfg->pid_file;
            cfg->pid_file = NULL;
            config_free(cfg);
            *cfg = fresh;
            free(cfg->pid_file);
            cfg->pid_file = pid_file;
            cfg->worker_num = n;
            proc_log_owner(cfg);
            log_info("master: reload: configuration is valid; workers reload it");
            for (int i = 0; i < n; i++)
                if (slots[i].pid > 0)
                    kill(slots[i].pid, SIGHUP);
            break;
        }
        case SIGUSR1:
            if (log_reopen() < 0)
                log_err("LOG_FILE %s: cannot reopen: %s", cfg->log_file, strerror(errno));
            proc_log_owner(cfg);
            for (int i = 0; i < n; i++)
                if (slots[i].pid > 0)
                    kill(slots[i].pid, SIGUSR1);
            break;
        }
    }
    log_info("master: stopped");
    if (handed_over) {
        proc_upgrade_remove_oldbin(cfg->pid_file);
    } else if (cfg->pid_file) {
        unlink(cfg->pid_file);
    }
    if (ready_fd >= 0)
        close(ready_fd);
    close(fd);
    shm_destroy(shm);
    tls_ctx_free(ssl_ctx);
    return 0;
}
