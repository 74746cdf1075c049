/* netaddr.h - socket addresses to and from text: what a configured address
 * ("127.0.0.1:9000", "[::1]:9000", "unix:/run/php.sock", "php:9000") means,
 * and how a peer's address is written in log lines. No sockets, no logging. */
#ifndef FOOKING_NETADDR_H
#define FOOKING_NETADDR_H

#include <stddef.h>
#include <sys/socket.h>

/* "unix:/path" and numeric "1.2.3.4:80" / "[::1]:80" fill *sa: 0. A name,
 * which needs DNS: 1, with the host copied into host[hostlen] and *port
 * pointing into addr. -1: malformed (no port, or a host longer than hostlen). */
int netaddr_parse(const char *addr, struct sockaddr_storage *sa, socklen_t *salen, char *host,
                  size_t hostlen, const char **port);
/* Resolves host (a name or a numeric address) and port with the blocking
 * resolver, so only at startup, and keeps the first address. 0, or the
 * EVUTIL_EAI_* error (evutil_gai_strerror says it in words). */
int netaddr_resolve(const char *host, const char *port, struct sockaddr_storage *sa,
                    socklen_t *salen);

/* A peer's address as text without the port ("1.2.3.4", "::1"), its port, and
 * (if ip is not NULL) its 16 bytes as IPv6, IPv4 mapped into ::ffff:0:0/96:
 * returns 1. A peer with no IP: 0, with host "unix" (or "?" for another
 * family), port 0 and ip zeroed. */
int netaddr_peer(const struct sockaddr *sa, char *host, size_t hostlen, int *port,
                 unsigned char ip[16]);
/* "1.2.3.4:80", "[::1]:80", or what netaddr_peer writes for a peer with no IP;
 * for log lines. */
void netaddr_format(const struct sockaddr *sa, char *buf, size_t len);

#endif
