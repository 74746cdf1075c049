/* proc.c - what both daemons (the gateway master, master.c, and the router,
 * router.c) do to become one: open the listening socket, write the pid file,
 * switch to USER/GROUP. Kept apart so that the router does not depend on the
 * gateway's supervision code, and the master keeps only that. */
#include "proc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

void proc_signal_set(sigset_t *set)
{
    static const int sigs[] = {SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGCHLD};
    sigemptyset(set);
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaddset(set, sigs[i]);
}

static int proc_listen_opt(const char *host, int port, int reuseport);

int proc_listen(const char *host, int port)
{
    return proc_listen_opt(host, port, 0);
}

int proc_listen_shared(const char *host, int port)
{
    return proc_listen_opt(host, port, 1);
}

static int proc_listen_opt(const char *host, int port, int reuseport)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res, *ai;
    char ps[16];
    snprintf(ps, sizeof(ps), "%d", port);
    int err = getaddrinfo(host, ps, &hints, &res);
    if (err != 0) {
        log_err("listen %s:%d: %s", host, port, gai_strerror(err));
        return -1;
    }
    int fd = -1;
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (reuseport)
            setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 4096) == 0)
            break;
        err = errno;
        close(fd);
        fd = -1;
        errno = err;
    }
    freeaddrinfo(res);
    if (fd < 0)
        log_err("listen %s:%d: %s", host, port, strerror(errno));
    return fd;
}

int proc_pidfile_write(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f) {
        int old = 0;
        if (fscanf(f, "%d", &old) == 1 && old > 0 && old != getpid() && kill(old, 0) == 0) {
            fclose(f);
            log_err("pid file %s: process %d is running", path, old);
            return -1;
        }
        fclose(f);
    }
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    f = fopen(tmp, "w");
    if (!f || fprintf(f, "%d\n", (int)getpid()) < 0 || fclose(f) != 0 || rename(tmp, path) != 0) {
        log_err("pid file %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

int proc_user_ids(const struct config *cfg, uid_t *uid, gid_t *gid, struct passwd **pwp)
{
    struct passwd *pw = NULL;
    *uid = (uid_t)-1;
    *gid = (gid_t)-1;
    if (cfg->user) {
        pw = getpwnam(cfg->user);
        if (!pw) {
            log_err("USER %s: no such user", cfg->user);
            return -1;
        }
        *uid = pw->pw_uid;
        *gid = pw->pw_gid;
    }
    if (cfg->group) {
        struct group *gr = getgrnam(cfg->group);
        if (!gr) {
            log_err("GROUP %s: no such group", cfg->group);
            return -1;
        }
        *gid = gr->gr_gid;
    }
    if (pwp)
        *pwp = pw;
    return 0;
}

void proc_log_owner(const struct config *cfg)
{
    uid_t uid;
    gid_t gid;
    if ((cfg->user == NULL && cfg->group == NULL) || geteuid() != 0 || cfg->log_file[0] != '/')
        return;
    if (proc_user_ids(cfg, &uid, &gid, NULL) == 0 && chown(cfg->log_file, uid, gid) != 0)
        log_err("LOG_FILE %s: cannot give it to USER/GROUP: %s", cfg->log_file, strerror(errno));
}

int proc_drop_privileges(const struct config *cfg)
{
    if (cfg->user == NULL && cfg->group == NULL)
        return 0;
    if (geteuid() != 0) {
        log_info("USER/GROUP ignored: not started as root");
        return 0;
    }
    gid_t gid;
    uid_t uid;
    struct passwd *pw = NULL;
    if (proc_user_ids(cfg, &uid, &gid, &pw) < 0)
        return -1;
    if (gid == (gid_t)-1)
        gid = getgid();
    if (setgid(gid) != 0 || (pw ? initgroups(pw->pw_name, gid) : setgroups(0, NULL)) != 0
        || (pw && setuid(uid) != 0)) {
        log_err("cannot switch to USER/GROUP: %s", strerror(errno));
        return -1;
    }
    return 0;
}

int proc_is_loopback(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);

    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return 0;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (ss.ss_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)&ss)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
    return 0;
}

/* ---- binary upgrade ---- */

int proc_env_fd(const char *name)
{
    const char *v = getenv(name);
    if (!v)
        return -1;
    char *end;
    long fd = strtol(v, &end, 10);
    if (*end != '\0' || fd < 3 || fd > 65535) {
        log_err("%s=%s: not a file descriptor; ignored", name, v);
        unsetenv(name);
        return -1;
    }
    unsetenv(name);
    fcntl((int)fd, F_SETFD, FD_CLOEXEC);
    return (int)fd;
}

int proc_inherited_listener(void)
{
    int fd = proc_env_fd(PROC_ENV_LISTEN_FD), yes = 0;
    socklen_t len = sizeof(yes);
    if (fd < 0)
        return -1;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &yes, &len) != 0 || !yes) {
        log_err("%s=%d is not a listening socket; ignored", PROC_ENV_LISTEN_FD, fd);
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

unsigned long long proc_sid_after(void)
{
    const char *v = getenv(PROC_ENV_SID_AFTER);
    unsigned long long ms = v ? strtoull(v, NULL, 10) : 0;
    unsetenv(PROC_ENV_SID_AFTER);
    return ms;
}

void proc_upgrade_paths(const char *config, char *exe, size_t exelen, char *conf, size_t conflen)
{
    ssize_t n = readlink("/proc/self/exe", exe, exelen - 1);
    exe[n > 0 ? n : 0] = '\0';
    if (!realpath(config, conf) || strlen(conf) >= conflen)
        snprintf(conf, conflen, "%s", config);
}

static void proc_oldbin(const char *pid_file, char *buf, size_t len)
{
    snprintf(buf, len, "%s.oldbin", pid_file);
}

void proc_upgrade_restore_pidfile(const char *pid_file)
{
    char oldbin[4200];
    if (!pid_file)
        return;
    proc_oldbin(pid_file, oldbin, sizeof(oldbin));
    if (rename(oldbin, pid_file) != 0)
        log_err("%s -> %s: %s", oldbin, pid_file, strerror(errno));
}

void proc_upgrade_remove_oldbin(const char *pid_file)
{
    char oldbin[4200];
    if (!pid_file)
        return;
    proc_oldbin(pid_file, oldbin, sizeof(oldbin));
    unlink(oldbin);
}

pid_t proc_upgrade_spawn(const char *who, const char *exe, const char *conf, int listen_fd,
                         const char *pid_file, unsigned long long sid_after, const sigset_t *mask,
                         int *ready_fd)
{
    int p[2];
    if (exe[0] == '\0') {
        log_err("%s: upgrade refused: cannot tell which binary runs", who);
        return -1;
    }
    if (pipe2(p, O_CLOEXEC) != 0) {
        log_err("%s: upgrade: pipe: %s", who, strerror(errno));
        return -1;
    }
    if (pid_file) {
        char oldbin[4200];
        proc_oldbin(pid_file, oldbin, sizeof(oldbin));
        if (rename(pid_file, oldbin) != 0)
            log_err("%s: upgrade: %s -> %s: %s", who, pid_file, oldbin, strerror(errno));
    }
    pid_t pid = fork();
    if (pid == 0) {
        char v[32];
        fcntl(listen_fd, F_SETFD, 0);
        fcntl(p[1], F_SETFD, 0);
        snprintf(v, sizeof(v), "%d", listen_fd);
        setenv(PROC_ENV_LISTEN_FD, v, 1);
        snprintf(v, sizeof(v), "%d", p[1]);
        setenv(PROC_ENV_READY_FD, v, 1);
        if (sid_after) {
            snprintf(v, sizeof(v), "%llu", sid_after);
            setenv(PROC_ENV_SID_AFTER, v, 1);
        }
        signal(SIGCHLD, SIG_DFL);
        sigprocmask(SIG_SETMASK, mask, NULL);
        execl(exe, exe, conf, (char *)NULL);
        log_err("%s: upgrade: exec %s: %s", who, exe, strerror(errno));
        _exit(127);
    }
    close(p[1]);
    if (pid < 0) {
        log_err("%s: upgrade: fork: %s", who, strerror(errno));
        close(p[0]);
        proc_upgrade_restore_pidfile(pid_file);
        return -1;
    }
    *ready_fd = p[0];
    log_info("%s: upgrade: started %s (pid %d); serving until it is ready", who, exe, (int)pid);
    return pid;
}

void proc_upgrade_ready(int ready_fd)
{
    if (write(ready_fd, "R", 1) != 1)
        log_err("cannot tell the previous process we serve: %s", strerror(errno));
    close(ready_fd);
}
