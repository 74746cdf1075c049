/* test_netaddr.c - configured addresses (numeric, unix:, names split for DNS,
 * malformed) and peers written for log lines, IPv4 and IPv6. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>

#include "netaddr.h"

static void test_parse(void **state)
{
    struct sockaddr_storage ss;
    socklen_t len = 0;
    char host[16];
    const char *port = NULL;
    const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;

    assert_int_equal(netaddr_parse("127.0.0.1:9000", &ss, &len, host, sizeof(host), &port), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(len, sizeof(struct sockaddr_in));
    assert_int_equal(ntohs(in->sin_port), 9000);
    assert_int_equal(netaddr_parse("[::1]:80", &ss, &len, host, sizeof(host), &port), 0);
    assert_int_equal(ss.ss_family, AF_INET6);
    assert_int_equal(ntohs(in6->sin6_port), 80);
    assert_int_equal(netaddr_parse("unix:/run/php.sock", &ss, &len, host, sizeof(host), &port), 0);
    assert_int_equal(ss.ss_family, AF_UNIX);
    assert_string_equal(((const struct sockaddr_un *)&ss)->sun_path, "/run/php.sock");
    assert_int_equal(netaddr_parse("php-fpm:9000", &ss, &len, host, sizeof(host), &port), 1);
    assert_string_equal(host, "php-fpm");
    assert_string_equal(port, "9000");
    assert_int_equal(netaddr_parse("php-fpm", &ss, &len, host, sizeof(host), &port), -1);
    assert_int_equal(netaddr_parse("php-fpm:", &ss, &len, host, sizeof(host), &port), -1);
    assert_int_equal(netaddr_parse(":9000", &ss, &len, host, sizeof(host), &port), -1);
    assert_int_equal(netaddr_parse("a-very-long-host-name:1", &ss, &len, host, sizeof(host), &port),
                     -1);
}

static void test_resolve(void **state)
{
    struct sockaddr_storage ss;
    socklen_t len = 0;

    /* numeric: no DNS involved */
    assert_int_equal(netaddr_resolve("127.0.0.1", "7000", &ss, &len), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(ntohs(((const struct sockaddr_in *)&ss)->sin_port), 7000);
    assert_int_equal(netaddr_resolve("::1", "7000", &ss, &len), 0);
    assert_int_equal(ss.ss_family, AF_INET6);
    assert_int_equal(len, sizeof(struct sockaddr_in6));
}

static void test_peer(void **state)
{
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons(5555)};
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6, .sin6_port = htons(443)};
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    unsigned char ip[16], want[16] = {0};
    char host[48], buf[64];
    int port = -1;

    inet_pton(AF_INET, "10.1.2.3", &in.sin_addr);
    inet_pton(AF_INET6, "2001:db8::7", &in6.sin6_addr);
    assert_int_equal(netaddr_peer((struct sockaddr *)&in, host, sizeof(host), &port, ip), 1);
    assert_string_equal(host, "10.1.2.3");
    assert_int_equal(port, 5555);
    want[10] = want[11] = 0xff;
    memcpy(want + 12, &in.sin_addr, 4);
    assert_memory_equal(ip, want, 16);
    netaddr_format((struct sockaddr *)&in, buf, sizeof(buf));
    assert_string_equal(buf, "10.1.2.3:5555");

    assert_int_equal(netaddr_peer((struct sockaddr *)&in6, host, sizeof(host), &port, ip), 1);
    assert_string_equal(host, "2001:db8::7");
    assert_int_equal(port, 443);
    assert_memory_equal(ip, &in6.sin6_addr, 16);
    netaddr_format((struct sockaddr *)&in6, buf, sizeof(buf));
    assert_string_equal(buf, "[2001:db8::7]:443");

    memset(want, 0, sizeof(want));
    assert_int_equal(netaddr_peer((struct sockaddr *)&un, host, sizeof(host), &port, ip), 0);
    assert_string_equal(host, "unix");
    assert_int_equal(port, 0);
    assert_memory_equal(ip, want, 16);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_resolve),
        cmocka_unit_test(test_peer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
