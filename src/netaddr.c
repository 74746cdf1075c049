/* netaddr.c - see netaddr.h. libevent's parsers do the numeric forms (they
 * accept exactly what its own connect calls take); a name is split at its last
 * colon and left to the caller's resolver, blocking (netaddr_resolve) at
 * startup or evdns later. */
#include "netaddr.h"

#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include <event2/util.h>

int netaddr_parse(const char *addr, struct sockaddr_storage *sa, socklen_t *salen, char *host,
                  size_t hostlen, const char **port)
{
    const char *colon;
    int len = sizeof(*sa);

    memset(sa, 0, sizeof(*sa));
    if (strncmp(addr, "unix:", 5) == 0) {
        struct sockaddr_un *un = (struct sockaddr_un *)sa;
        un->sun_family = AF_UNIX;
        snprintf(un->sun_path, sizeof(un->sun_path), "%s", addr + 5);
        *salen = sizeof(*un);
        return 0;
    }
    if (evutil_parse_sockaddr_port(addr, (struct sockaddr *)sa, &len) == 0) {
        *salen = (socklen_t)len;
        return 0;
    }
    colon = strrchr(addr, ':');
    if (colon == NULL || colon == addr || (size_t)(colon - addr) >= hostlen || colon[1] == '\0')
        return -1;
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    *port = colon + 1;
    return 1;
}

int netaddr_resolve(const char *host, const char *port, struct sockaddr_storage *sa,
                    socklen_t *salen)
{
    struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    int err = evutil_getaddrinfo(host, port, &hints, &res);

    if (err != 0)
        return err;
    memcpy(sa, res->ai_addr, res->ai_addrlen);
    *salen = (socklen_t)res->ai_addrlen;
    evutil_freeaddrinfo(res);
    return 0;
}

int netaddr_peer(const struct sockaddr *sa, char *host, size_t hostlen, int *port,
                 unsigned char ip[16])
{
    if (ip != NULL)
        memset(ip, 0, 16);
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        evutil_inet_ntop(AF_INET, &in->sin_addr, host, hostlen);
        *port = ntohs(in->sin_port);
        if (ip != NULL) {
            ip[10] = ip[11] = 0xff;
            memcpy(ip + 12, &in->sin_addr, 4);
        }
        return 1;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        evutil_inet_ntop(AF_INET6, &in6->sin6_addr, host, hostlen);
        *port = ntohs(in6->sin6_port);
        if (ip != NULL)
            memcpy(ip, &in6->sin6_addr, 16);
        return 1;
    }
    snprintf(host, hostlen, "%s", sa->sa_family == AF_UNIX ? "unix" : "?");
    *port = 0;
    return 0;
}

void netaddr_format(const struct sockaddr *sa, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN] = "?";
    int port;

    if (!netaddr_peer(sa, host, sizeof(host), &port, NULL))
        snprintf(buf, len, "%s", host);
    else if (sa->sa_family == AF_INET6)
        snprintf(buf, len, "[%s]:%d", host, port);
    else
        snprintf(buf, len, "%s:%d", host, port);
}
