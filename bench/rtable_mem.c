/* rtable_mem.c - what the router's tables cost per session, per bound uid and
 * per channel membership, at 100K sessions: malloc'd bytes in use (glibc
 * mallinfo2, chunk overhead included) before and after each step.
 *   make build/rtable_mem && build/rtable_mem [sessions] */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rmsg.h"
#include "rtable.h"

static size_t in_use(void)
{
    struct mallinfo2 mi = mallinfo2();

    return mi.uordblks + mi.hblkhd; /* small chunks, and the mmapped big ones (bucket arrays) */
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 100000, nlinks = 8, applied;
    unsigned char *sids = malloc(n * RMSG_SID_LEN);
    struct rtable *t = rtable_new();
    struct rtable_link *links[8];
    int owners[8];
    size_t m0, m1, m2, m3, m4, m5, m6;
    char uid[32], ch[32];

    if (sids == NULL || t == NULL)
        return 1;
    for (size_t i = 0; i < n; i++)
        {
            char tmp[24];
            snprintf(tmp, sizeof(tmp), "%016zx", i);
            memcpy(sids + i * RMSG_SID_LEN, tmp, RMSG_SID_LEN);
        }
    for (size_t l = 0; l < nlinks; l++)
        links[l] = rtable_link_add(t, &owners[l], 1, (uint32_t)l);
    m0 = in_use();
    for (size_t i = 0; i < n; i++)
        rtable_sessions_add(t, links[i % nlinks], sids + i * RMSG_SID_LEN, 1);
    m1 = in_use();
    /* every session its own uid, "user-000042" (11 bytes) */
    for (size_t i = 0; i < n; i++) {
        int len = snprintf(uid, sizeof(uid), "user-%06zu", i);
        rtable_bind(t, NULL, sids + i * RMSG_SID_LEN, 1, uid, (size_t)len, &applied);
    }
    m2 = in_use();
    rtable_unbind(t, NULL, sids, n);
    /* two sessions per uid: a uid's second session costs what? */
    m3 = in_use();
    for (size_t i = 0; i < n; i++) {
        int len = snprintf(uid, sizeof(uid), "user-%06zu", i / 2);
        rtable_bind(t, NULL, sids + i * RMSG_SID_LEN, 1, uid, (size_t)len, &applied);
    }
    m4 = in_use();
    /* each session a member of one of 100 channels, then of a second one */
    for (size_t i = 0; i < n; i++) {
        int len = snprintf(ch, sizeof(ch), "room-%zu", i % 100);
        rtable_join(t, NULL, sids + i * RMSG_SID_LEN, 1, ch, (size_t)len, &applied);
    }
    m5 = in_use();
    for (size_t i = 0; i < n; i++) {
        int len = snprintf(ch, sizeof(ch), "hall-%zu", i % 100);
        rtable_join(t, NULL, sids + i * RMSG_SID_LEN, 1, ch, (size_t)len, &applied);
    }
    m6 = in_use();
    rtable_free(t);
    printf("%zu sessions on %zu links\n", n, nlinks);
    printf("per session (no uid, no channel): %.1f bytes\n", (double)(m1 - m0) / n);
    printf("per bound uid (one session each, 11-byte uids): %.1f bytes\n", (double)(m2 - m1) / n);
    printf("per session bound to a uid of two sessions (on two links): %.1f bytes\n",
           (double)(m4 - m3) / n);
    printf("per membership (first channel): %.1f bytes\n", (double)(m5 - m4) / n);
    printf("per membership (second channel): %.1f bytes\n", (double)(m6 - m5) / n);
    printf("RESULT label=mem-router scenario=mem n=%zu session_bytes=%.0f uid_bytes=%.0f "
           "uid_second_link_bytes=%.0f membership_bytes=%.0f\n",
           n, (double)(m1 - m0) / n, (double)(m2 - m1) / n, (double)(m4 - m3) / n,
           (double)(m5 - m4) / n);
    free(sids);
    return 0;
}
