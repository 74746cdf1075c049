/* proc.c - what both daemons (the gateway master, master.c, and the router,
 * router.c) do to become one: open the listening socket, write the pid file,
 * switch to USER/GROUP. Kept apart so that the router does not depend on the
 * gateway's supervision code, and the master keeps only that. */
#include "proc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <grp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

int proc_listen(const char *host, int port)
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
