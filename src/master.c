/* master.c - the gateway master: it owns the listening socket and the worker
 * processes and does nothing else, so nothing a client sends can reach it.
 *
 * Signals are blocked and taken synchronously with sigtimedwait(): no handler
 * runs at an arbitrary point, and the wait's timeout doubles as the respawn
 * back-off timer. A worker that dies is replaced at once; one that keeps dying
 * young is replaced after a growing delay (0.1 s doubling to 10 s).
 *
 * With METRICS_PORT the wait is a libevent loop instead, which also serves
 * /metrics and /healthz (master_metrics.c): the same signals, still blocked,
 * are read from a signalfd, and the timeout is a timer. */
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
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backoff.h"
#include "log.h"
#include "master_metrics.h"
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

/* How the master waits: sigtimedwait alone, or, with METRICS_PORT, a
 * libevent loop that serves HTTP meanwhile. The loop uses poll, which keeps
 * no kernel object a forked worker would share (epoll would). */
struct master_loop {
    struct event_base *base;
    struct master_metrics *metrics;
    struct event *sig_ev, *timer;
    int sigfd;
};

static void master_loop_nothing(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg; /* the loop returns after it: the caller reads the signalfd */
}

/* The HTTP endpoint, bound before anything starts so that a port in use is
 * an error at start. 0, or -1 (logged). */
static int master_loop_open(struct master_loop *ml, struct config *cfg, struct shm_block *shm)
{
    memset(ml, 0, sizeof(*ml));
    ml->sigfd = -1;
    if (cfg->metrics_port == 0)
        return 0;
    struct event_config *ec = event_config_new();
    if (ec) {
        event_config_avoid_method(ec, "epoll");
        ml->base = event_base_new_with_config(ec);
        event_config_free(ec);
    }
    if (!ml->base) {
        log_err("master: cannot create an event loop for METRICS_PORT");
        return -1;
    }
    ml->metrics = master_metrics_new(ml->base, cfg, shm);
    return ml->metrics ? 0 : -1;
}

/* The signals the master takes (blocked already) arrive on a signalfd. */
static int master_loop_signals(struct master_loop *ml, const sigset_t *set)
{
    if (!ml->base)
        return 0;
    ml->sigfd = signalfd(-1, set, SFD_NONBLOCK | SFD_CLOEXEC);
    ml->sig_ev = ml->sigfd >= 0 ? event_new(ml->base, ml->sigfd, EV_READ | EV_PERSIST,
                                            master_loop_nothing, NULL)
                                : NULL;
    ml->timer = evtimer_new(ml->base, master_loop_nothing, NULL);
    if (!ml->sig_ev || !ml->timer || event_add(ml->sig_ev, NULL) < 0) {
        log_err("master: signalfd: %s", strerror(errno));
        return -1;
    }
    return 0;
}

/* A signal, or -1 after `wait` seconds (or an HTTP request served). */
static int master_loop_wait(struct master_loop *ml, const sigset_t *set, double wait)
{
    struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
    if (!ml->base) {
        siginfo_t info;
        return sigtimedwait(set, &info, &ts);
    }
    struct signalfd_siginfo si;
    if (read(ml->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
        return (int)si.ssi_signo;
    struct timeval tv = {ts.tv_sec, ts.tv_nsec / 1000};
    evtimer_add(ml->timer, &tv);
    event_base_loop(ml->base, EVLOOP_ONCE);
    if (read(ml->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
        return (int)si.ssi_signo;
    return -1;
}

/* In a forked worker: the master's descriptors are not its to keep. */
static void master_loop_child(struct master_loop *ml)
{
    if (ml->sigfd >= 0)
        close(ml->sigfd);
    if (ml->metrics)
        close(master_metrics_fd(ml->metrics));
}

static void master_loop_close(struct master_loop *ml)
{
    if (ml->sig_ev)
        event_free(ml->sig_ev);
    if (ml->timer)
        event_free(ml->timer);
    master_metrics_free(ml->metrics);
    if (ml->sigfd >= 0)
        close(ml->sigfd);
    if (ml->base)
        event_base_free(ml->base);
    memset(ml, 0, sizeof(*ml));
    ml->sigfd = -1;
}

static pid_t master_spawn(struct config *cfg, int id, int fd, struct shm_block *shm, void *ssl_ctx,
                          const sigset_t *oldmask, struct master_loop *ml)
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
    master_loop_child(ml);
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

/* What a dead worker held is held no more; its counters stay, and its
 * successor counts on from them (they never go back). */
static void master_clear_gauges(struct worker_stats *st)
{
    for (int p = 0; p < STATS_PROTO_N; p++)
        gauge_set(&st->clients[p], 0);
    gauge_set(&st->backend.queued, 0);
    gauge_set(&st->router_link, 0);
    gauge_set(&st->bus.connected[0], 0);
    gauge_set(&st->bus.connected[1], 0);
}

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
            atomic_store(&shm->workers[i].ready, 0); /* its successor says so again */
            master_clear_gauges(&shm->workers[i].stats);
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
    /* Shared before daemon(): its fork keeps the mapping, and METRICS_PORT
     * in use is an error the command line sees. */
    struct shm_block *shm = shm_create(cfg->worker_num);
    if (!shm) {
        log_err("shared memory: %s", strerror(errno));
        return 1;
    }
    struct master_loop ml;
    if (master_loop_open(&ml, cfg, shm) < 0) {
        master_loop_close(&ml);
        shm_destroy(shm);
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
    if (master_loop_signals(&ml, &set) < 0) {
        master_loop_close(&ml);
        shm_destroy(shm);
        return 1;
    }

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
                pid_t pid = master_spawn(cfg, i, fd, shm, ssl_ctx, &oldmask, &ml);
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
        int sig = master_loop_wait(&ml, &set, wait);
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
            if (fresh.metrics_port != cfg->metrics_port
                || strcmp(fresh.metrics_host, cfg->metrics_host) != 0)
                log_err("master: reload: METRICS_HOST and METRICS_PORT changes need a restart");
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
    master_loop_close(&ml);
    shm_destroy(shm);
    tls_ctx_free(ssl_ctx);
    return 0;
}
