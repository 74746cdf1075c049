/* test_rtable.c - the router's tables without a socket: links, sessions added,
 * moved and removed, SID lists split by link with each link's order kept (one
 * message's worth of SIDs and more, over many links), channel counts with
 * "first in / last out", forgetting a link leaving no trace, and INFO totals. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rmsg.h"
#include "rtable.h"

/* A SID whose bytes say which test session it is. */
static void sid_make(unsigned char *out, unsigned n)
{
    memset(out, 'x', RMSG_SID_LEN);
    snprintf((char *)out, RMSG_SID_LEN, "s%08u", n);
}

static unsigned char *sids_make(unsigned first, size_t n)
{
    unsigned char *p = malloc(n * RMSG_SID_LEN);

    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        sid_make(p + i * RMSG_SID_LEN, first + (unsigned)i);
    return p;
}

static void totals_equal(struct rtable *t, size_t sessions, size_t channels, size_t links)
{
    struct rtable_totals tot;

    rtable_totals(t, &tot);
    assert_int_equal(tot.sessions, sessions);
    assert_int_equal(tot.channels, channels);
    assert_int_equal(tot.links, links);
}

static void test_links(void **state)
{
    struct rtable *t = rtable_new();
    int a, b;
    struct rtable_link *la, *lb, *l;

    assert_non_null(t);
    totals_equal(t, 0, 0, 0);
    assert_null(rtable_links_first(t));
    assert_null(rtable_gateway(t, 1, 0));
    la = rtable_link_add(t, &a, 1, 0);
    lb = rtable_link_add(t, &b, 1, 1);
    assert_non_null(la);
    assert_non_null(lb);
    assert_ptr_equal(rtable_link_owner(la), &a);
    assert_int_equal(rtable_link_server_id(lb), 1);
    assert_int_equal(rtable_link_worker_id(lb), 1);
    assert_ptr_equal(rtable_gateway(t, 1, 0), &a);
    assert_ptr_equal(rtable_gateway(t, 1, 1), &b);
    assert_null(rtable_gateway(t, 0, 1));
    /* big ids are whole 32-bit values */
    assert_non_null(l = rtable_link_add(t, &a, 0x01020304, 0xfffffffe));
    assert_ptr_equal(rtable_gateway(t, 0x01020304, 0xfffffffe), &a);
    assert_null(rtable_gateway(t, 0x01020304, 0xffffffff));
    rtable_link_forget(t, l, NULL);
    /* link order is add order */
    assert_ptr_equal(rtable_links_first(t), la);
    assert_ptr_equal(rtable_links_next(la), lb);
    assert_null(rtable_links_next(lb));
    totals_equal(t, 0, 0, 2);
    rtable_link_forget(t, la, NULL);
    assert_null(rtable_gateway(t, 1, 0));
    assert_ptr_equal(rtable_links_first(t), lb);
    totals_equal(t, 0, 0, 1);
    rtable_free(t); /* forgets lb */
}

static void test_sessions(void **state)
{
    struct rtable *t = rtable_new();
    int a, b;
    struct rtable_link *la = rtable_link_add(t, &a, 1, 0), *lb = rtable_link_add(t, &b, 1, 1);
    unsigned char *s = sids_make(0, 10);

    assert_int_equal(rtable_sessions_add(t, la, s, 10), 0);
    assert_int_equal(rtable_link_sessions(la), 10);
    /* CONN again of what the link holds changes nothing */
    assert_int_equal(rtable_sessions_add(t, la, s, 3), 0);
    assert_int_equal(rtable_link_sessions(la), 10);
    assert_ptr_equal(rtable_session_owner(t, s + 4 * RMSG_SID_LEN), &a);
    totals_equal(t, 10, 0, 2);

    /* CLOSE from a link that does not hold the SIDs is ignored */
    assert_int_equal(rtable_sessions_remove(t, lb, s, 10), 0);
    assert_int_equal(rtable_link_sessions(la), 10);
    assert_int_equal(rtable_sessions_remove(t, la, s, 2), 2);
    assert_null(rtable_session_owner(t, s));
    assert_int_equal(rtable_link_sessions(la), 8);
    /* twice: nothing left to remove */
    assert_int_equal(rtable_sessions_remove(t, la, s, 2), 0);
    totals_equal(t, 8, 0, 2);
    rtable_free(t);
    free(s);
}

/* The same SID on a second link (the client reconnected through another
 * worker before the first said CLOSE) moves: the new link holds it, the old
 * one no longer counts it, and the old link's late CLOSE does not remove it. */
static void test_conn_moves(void **state)
{
    struct rtable *t = rtable_new();
    int a, b;
    struct rtable_link *la = rtable_link_add(t, &a, 1, 0), *lb = rtable_link_add(t, &b, 2, 0);
    unsigned char *s = sids_make(100, 4);
    struct rtable_forgot f;

    rtable_sessions_add(t, la, s, 4);
    assert_int_equal(rtable_sessions_add(t, lb, s + RMSG_SID_LEN, 2), 0);
    assert_ptr_equal(rtable_session_owner(t, s), &a);
    assert_ptr_equal(rtable_session_owner(t, s + RMSG_SID_LEN), &b);
    assert_ptr_equal(rtable_session_owner(t, s + 2 * RMSG_SID_LEN), &b);
    assert_int_equal(rtable_link_sessions(la), 2);
    assert_int_equal(rtable_link_sessions(lb), 2);
    totals_equal(t, 4, 0, 2);
    assert_int_equal(rtable_sessions_remove(t, la, s, 4), 2);
    assert_ptr_equal(rtable_session_owner(t, s + RMSG_SID_LEN), &b);
    totals_equal(t, 2, 0, 2);
    /* forgetting the old link leaves the moved sessions with the new one */
    rtable_sessions_add(t, la, s + 3 * RMSG_SID_LEN, 1); /* and back again */
    rtable_link_forget(t, la, &f);
    assert_int_equal(f.sessions, 1);
    assert_ptr_equal(rtable_session_owner(t, s + RMSG_SID_LEN), &b);
    assert_null(rtable_session_owner(t, s + 3 * RMSG_SID_LEN));
    totals_equal(t, 2, 0, 1);
    rtable_free(t);
    free(s);
}

/* 4095 SIDs (one message's worth) and then 3 * 4095, dealt over 37 links in
 * a scrambled pattern, with unknown SIDs among them: every link gets exactly
 * its SIDs, in the order they came, and groups come in order of first SID. */
static void test_split_many(void **state)
{
    enum { NLINKS = 37 };
    struct rtable *t = rtable_new();
    struct rtable_link *links[NLINKS];
    int owners[NLINKS];
    struct rtable_split sp = {0};
    size_t sizes[] = {RMSG_MAX_SIDS, 3 * RMSG_MAX_SIDS, 1, 0};

    for (int i = 0; i < NLINKS; i++)
        assert_non_null(links[i] = rtable_link_add(t, &owners[i], 7, (uint32_t)i));
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        size_t n = sizes[k], unknown = 0;
        unsigned char *s = sids_make((unsigned)(k * 100000), n);
        int *who = malloc((n + 1) * sizeof(*who));
        int first_seen[NLINKS];

        for (size_t i = 0; i < n; i++) {
            /* every 11th SID is nobody's */
            who[i] = i % 11 == 5 ? -1 : (int)((i * 7919 + i / 3) % NLINKS);
            if (who[i] >= 0)
                assert_int_equal(rtable_sessions_add(t, links[who[i]], s + i * RMSG_SID_LEN, 1), 0);
            else
                unknown++;
        }
        assert_int_equal(rtable_split(t, s, n, &sp), 0);
        assert_int_equal(sp.unknown, unknown);
        /* the expected groups, in order of first appearance */
        size_t ng = 0;
        for (int l = 0; l < NLINKS; l++)
            first_seen[l] = -1;
        for (size_t i = 0; i < n; i++)
            if (who[i] >= 0 && first_seen[who[i]] < 0)
                first_seen[who[i]] = (int)ng++;
        assert_int_equal(sp.ngroups, ng);
        size_t total = 0;
        for (size_t g = 0; g < sp.ngroups; g++) {
            int l = (int)((int *)sp.groups[g].owner - owners);
            size_t j = 0;
            assert_true(l >= 0 && l < NLINKS);
            assert_int_equal(first_seen[l], (int)g);
            for (size_t i = 0; i < n; i++) {
                if (who[i] != l)
                    continue;
                assert_true(j < sp.groups[g].n);
                assert_memory_equal(sp.groups[g].sids + j * RMSG_SID_LEN, s + i * RMSG_SID_LEN,
                                    RMSG_SID_LEN);
                j++;
            }
            assert_int_equal(j, sp.groups[g].n);
            total += j;
        }
        assert_int_equal(total + unknown, n);
        /* the split is a copy: forgetting a link does not touch it */
        if (sp.ngroups > 0) {
            unsigned char first[RMSG_SID_LEN];
            memcpy(first, sp.groups[0].sids, RMSG_SID_LEN);
            int l0 = (int)((int *)sp.groups[0].owner - owners);
            rtable_sessions_remove(t, links[l0], s, n);
            assert_memory_equal(sp.groups[0].sids, first, RMSG_SID_LEN);
        }
        for (int l = 0; l < NLINKS; l++)
            rtable_sessions_remove(t, links[l], s, n);
        totals_equal(t, 0, 0, NLINKS);
        free(who);
        free(s);
    }
    rtable_split_free(&sp);
    rtable_free(t);
}

/* A SID given twice goes twice, to its link, in place. */
static void test_split_duplicates(void **state)
{
    struct rtable *t = rtable_new();
    int a, b;
    struct rtable_link *la = rtable_link_add(t, &a, 1, 0), *lb = rtable_link_add(t, &b, 1, 1);
    unsigned char *s = sids_make(0, 3), list[5 * RMSG_SID_LEN];
    struct rtable_split sp = {0};

    rtable_sessions_add(t, la, s, 1);
    rtable_sessions_add(t, lb, s + RMSG_SID_LEN, 1);
    /* b0 a0 b0 unknown a0 */
    memcpy(list, s + RMSG_SID_LEN, RMSG_SID_LEN);
    memcpy(list + RMSG_SID_LEN, s, RMSG_SID_LEN);
    memcpy(list + 2 * RMSG_SID_LEN, s + RMSG_SID_LEN, RMSG_SID_LEN);
    memcpy(list + 3 * RMSG_SID_LEN, s + 2 * RMSG_SID_LEN, RMSG_SID_LEN);
    memcpy(list + 4 * RMSG_SID_LEN, s, RMSG_SID_LEN);
    assert_int_equal(rtable_split(t, list, 5, &sp), 0);
    assert_int_equal(sp.ngroups, 2);
    assert_int_equal(sp.unknown, 1);
    assert_ptr_equal(sp.groups[0].owner, &b);
    assert_int_equal(sp.groups[0].n, 2);
    assert_ptr_equal(sp.groups[1].owner, &a);
    assert_int_equal(sp.groups[1].n, 2);
    assert_memory_equal(sp.groups[1].sids + RMSG_SID_LEN, s, RMSG_SID_LEN);
    /* a second split reuses the buffers and starts from nothing */
    assert_int_equal(rtable_split(t, s + 2 * RMSG_SID_LEN, 1, &sp), 0);
    assert_int_equal(sp.ngroups, 0);
    assert_int_equal(sp.unknown, 1);
    rtable_split_free(&sp);
    rtable_free(t);
    free(s);
}

static void count_owner(void *owner, void *arg)
{
    int *seen = arg;

    seen[*(int *)owner]++;
}

static void test_channels(void **state)
{
    struct rtable *t = rtable_new();
    int ids[3] = {0, 1, 2}, seen[3] = {0};
    struct rtable_link *l0 = rtable_link_add(t, &ids[0], 1, 0);
    struct rtable_link *l1 = rtable_link_add(t, &ids[1], 1, 1);
    struct rtable_link *l2 = rtable_link_add(t, &ids[2], 1, 2);
    size_t n = 99;

    /* first link in */
    assert_int_equal(rtable_subscribe(t, l0, "room", 4, &n), 1);
    assert_int_equal(n, 1);
    /* again: no change */
    assert_int_equal(rtable_subscribe(t, l0, "room", 4, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(rtable_subscribe(t, l1, "room", 4, &n), 1);
    assert_int_equal(n, 2);
    /* names are bytes: a NUL and a prefix are other channels */
    assert_int_equal(rtable_subscribe(t, l2, "room\0x", 6, &n), 1);
    assert_int_equal(n, 1);
    assert_int_equal(rtable_subscribe(t, l2, "roo", 3, NULL), 1);
    assert_int_equal(rtable_channel_links(t, "room", 4), 2);
    assert_int_equal(rtable_channel_links(t, "nope", 4), 0);
    assert_int_equal(rtable_link_channels(l2), 2);
    totals_equal(t, 0, 3, 3);

    rtable_channel_each(t, "room", 4, count_owner, seen);
    assert_int_equal(seen[0], 1);
    assert_int_equal(seen[1], 1);
    assert_int_equal(seen[2], 0);
    rtable_channel_each(t, "nope", 4, count_owner, seen);

    /* unsubscribe what a link never joined: nothing */
    assert_int_equal(rtable_unsubscribe(t, l2, "room", 4, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(rtable_unsubscribe(t, l0, "room", 4, &n), 1);
    assert_int_equal(n, 1);
    assert_int_equal(rtable_unsubscribe(t, l0, "room", 4, &n), 0);
    /* last out: the channel is gone */
    assert_int_equal(rtable_unsubscribe(t, l1, "room", 4, &n), 1);
    assert_int_equal(n, 0);
    assert_int_equal(rtable_channel_links(t, "room", 4), 0);
    totals_equal(t, 0, 2, 3);
    assert_int_equal(rtable_unsubscribe(t, l1, "never", 5, &n), 0);
    assert_int_equal(n, 0);
    rtable_free(t);
}

static void test_with_sessions(void **state)
{
    struct rtable *t = rtable_new();
    int ids[3] = {0, 1, 2}, seen[3] = {0};
    struct rtable_link *l[3];
    unsigned char *s = sids_make(0, 2);

    for (int i = 0; i < 3; i++)
        l[i] = rtable_link_add(t, &ids[i], 3, (uint32_t)i);
    rtable_sessions_add(t, l[0], s, 1);
    rtable_sessions_add(t, l[2], s + RMSG_SID_LEN, 1);
    rtable_with_sessions_each(t, count_owner, seen);
    assert_int_equal(seen[0], 1);
    assert_int_equal(seen[1], 0);
    assert_int_equal(seen[2], 1);
    rtable_free(t);
    free(s);
}

/* Forgetting a link: its sessions, channels and gateway entry are gone, the
 * other links' are untouched, the report counts what went, and a new link
 * for the same ids starts from nothing. */
static void test_forget(void **state)
{
    struct rtable *t = rtable_new();
    int a = 0, b = 0, a2 = 0, seen[1] = {0};
    struct rtable_link *la = rtable_link_add(t, &a, 5, 0), *lb = rtable_link_add(t, &b, 5, 1);
    unsigned char *s = sids_make(0, 2000);
    struct rtable_forgot f;
    struct rtable_split sp = {0};

    assert_int_equal(rtable_sessions_add(t, la, s, 1500), 0);
    assert_int_equal(rtable_sessions_add(t, lb, s + 1500 * RMSG_SID_LEN, 500), 0);
    rtable_subscribe(t, la, "only-a", 6, NULL);
    rtable_subscribe(t, la, "both", 4, NULL);
    rtable_subscribe(t, lb, "both", 4, NULL);
    totals_equal(t, 2000, 2, 2);

    rtable_link_forget(t, la, &f);
    assert_int_equal(f.sessions, 1500);
    assert_int_equal(f.channels, 2);
    assert_int_equal(f.emptied, 1);
    totals_equal(t, 500, 1, 1);
    assert_null(rtable_gateway(t, 5, 0));
    assert_ptr_equal(rtable_gateway(t, 5, 1), &b);
    assert_int_equal(rtable_channel_links(t, "only-a", 6), 0);
    assert_int_equal(rtable_channel_links(t, "both", 4), 1);
    for (size_t i = 0; i < 1500; i++)
        assert_null(rtable_session_owner(t, s + i * RMSG_SID_LEN));
    assert_ptr_equal(rtable_session_owner(t, s + 1999 * RMSG_SID_LEN), &b);
    assert_int_equal(rtable_split(t, s, 1500, &sp), 0);
    assert_int_equal(sp.ngroups, 0);
    assert_int_equal(sp.unknown, 1500);
    assert_ptr_equal(rtable_links_first(t), lb);
    assert_null(rtable_links_next(lb));

    /* the same worker back: a fresh link, nothing inherited */
    la = rtable_link_add(t, &a2, 5, 0);
    assert_ptr_equal(rtable_gateway(t, 5, 0), &a2);
    assert_int_equal(rtable_link_sessions(la), 0);
    assert_int_equal(rtable_link_channels(la), 0);
    rtable_channel_each(t, "only-a", 6, count_owner, seen);
    assert_int_equal(seen[0], 0);

    rtable_link_forget(t, lb, &f);
    assert_int_equal(f.sessions, 500);
    assert_int_equal(f.emptied, 1);
    totals_equal(t, 0, 0, 1);
    rtable_link_forget(t, la, NULL);
    totals_equal(t, 0, 0, 0);
    assert_null(rtable_links_first(t));
    rtable_split_free(&sp);
    rtable_free(t);
    free(s);
}


/* ---- uids and members (backend API v2) ---- */

static void count_links(void *owner, size_t n, void *arg)
{
    size_t *sum = arg;
    (void)owner;
    sum[0]++;
    sum[1] += n;
}

static void collect_sid(const unsigned char *sid, void *owner, void *arg)
{
    unsigned char **p = arg;
    (void)owner;
    memcpy(*p, sid, RMSG_SID_LEN);
    *p += RMSG_SID_LEN;
}

static void test_uids(void **state)
{
    struct rtable *t = rtable_new();
    int a, b;
    struct rtable_link *la = rtable_link_add(t, &a, 1, 0), *lb = rtable_link_add(t, &b, 1, 1);
    unsigned char *s = sids_make(0, 6), got[6 * RMSG_SID_LEN], *p = got;
    size_t applied, len, sum[2] = {0, 0};
    const unsigned char *u;
    struct rtable_totals tot;

    rtable_sessions_add(t, la, s, 3);
    rtable_sessions_add(t, lb, s + 3 * RMSG_SID_LEN, 3);
    /* A backend's BIND: every known SID, unknown ones skipped. */
    unsigned char *unknown = sids_make(99, 1);
    assert_int_equal(rtable_bind(t, NULL, s, 2, "alice", 5, &applied), 0);
    assert_int_equal(applied, 2);
    assert_int_equal(rtable_bind(t, NULL, unknown, 1, "alice", 5, &applied), 0);
    assert_int_equal(applied, 0);
    assert_int_equal(rtable_bind(t, NULL, s + 4 * RMSG_SID_LEN, 1, "alice", 5, NULL), 0);
    assert_int_equal(rtable_uid_sessions(t, "alice", 5), 3);
    assert_int_equal(rtable_uid_sessions(t, "alic", 4), 0);
    assert_int_equal(rtable_uid_links_each(t, "alice", 5, count_links, sum), 2);
    assert_int_equal(sum[0], 2);
    assert_int_equal(sum[1], 3);
    u = rtable_session_uid(t, s + RMSG_SID_LEN, &len);
    assert_non_null(u);
    assert_int_equal(len, 5);
    assert_memory_equal(u, "alice", 5);
    assert_null(rtable_session_uid(t, s + 2 * RMSG_SID_LEN, &len));
    assert_null(rtable_session_uid(t, unknown, &len));
    rtable_uid_each(t, "alice", 5, collect_sid, &p);
    assert_int_equal(p - got, 3 * RMSG_SID_LEN);
    /* binding again to the same uid changes nothing; to another replaces it */
    assert_int_equal(rtable_bind(t, NULL, s, 1, "alice", 5, NULL), 0);
    assert_int_equal(rtable_uid_sessions(t, "alice", 5), 3);
    assert_int_equal(rtable_bind(t, NULL, s, 1, "bob", 3, NULL), 0);
    assert_int_equal(rtable_uid_sessions(t, "alice", 5), 2);
    assert_int_equal(rtable_uid_sessions(t, "bob", 3), 1);
    rtable_totals(t, &tot);
    assert_int_equal(tot.uids, 2);
    /* A gateway's report only speaks for its own sessions. */
    assert_int_equal(rtable_bind(t, lb, s + 2 * RMSG_SID_LEN, 2, "carol", 5, &applied), 0);
    assert_int_equal(applied, 1); /* s[3] is lb's, s[2] is la's */
    assert_int_equal(rtable_uid_sessions(t, "carol", 5), 1);
    assert_int_equal(rtable_unbind(t, lb, s, 3), 0); /* la's: ignored */
    assert_int_equal(rtable_uid_sessions(t, "bob", 3), 1);
    /* UNBIND; the last session of a uid takes the uid with it */
    assert_int_equal(rtable_unbind(t, NULL, s, 6), 4);
    assert_int_equal(rtable_unbind(t, NULL, s, 6), 0);
    rtable_totals(t, &tot);
    assert_int_equal(tot.uids, 0);
    assert_int_equal(rtable_uid_links_each(t, "alice", 5, NULL, NULL), 0);
    /* bounds */
    assert_int_equal(rtable_bind(t, NULL, s, 1, "", 0, NULL), -1);
    rtable_free(t);
    free(s);
    free(unknown);
}

/* CLOSE, a move to another link, and a forgotten link all take the session's
 * uid and memberships with it. */
static void test_uids_members_go_with_session(void **state)
{
    struct rtable *t = rtable_new();
    int a, b;
    struct rtable_link *la = rtable_link_add(t, &a, 1, 0), *lb = rtable_link_add(t, &b, 2, 0);
    unsigned char *s = sids_make(0, 4);
    struct rtable_totals tot;
    size_t sum[2] = {0, 0};

    rtable_sessions_add(t, la, s, 4);
    assert_int_equal(rtable_bind(t, NULL, s, 4, "u", 1, NULL), 0);
    assert_int_equal(rtable_join(t, NULL, s, 4, "room", 4, NULL), 0);
    assert_int_equal(rtable_join(t, NULL, s, 2, "hall", 4, NULL), 0);
    assert_int_equal(rtable_members(t, "room", 4), 4);
    assert_int_equal(rtable_member_channels(t), 2);
    /* CLOSE of s[0] */
    assert_int_equal(rtable_sessions_remove(t, la, s, 1), 1);
    assert_int_equal(rtable_uid_sessions(t, "u", 1), 3);
    assert_int_equal(rtable_members(t, "room", 4), 3);
    assert_int_equal(rtable_members(t, "hall", 4), 1);
    /* s[1] moves to lb: it starts over there */
    assert_int_equal(rtable_sessions_add(t, lb, s + RMSG_SID_LEN, 1), 0);
    assert_int_equal(rtable_uid_sessions(t, "u", 1), 2);
    assert_int_equal(rtable_members(t, "room", 4), 2);
    assert_int_equal(rtable_members(t, "hall", 4), 0);
    assert_int_equal(rtable_member_channels(t), 1);
    assert_int_equal(rtable_member_links_each(t, "room", 4, count_links, sum), 1);
    assert_int_equal(sum[1], 2);
    /* lb's report binds its session; then la is forgotten */
    assert_int_equal(rtable_bind(t, lb, s + RMSG_SID_LEN, 1, "u", 1, NULL), 0);
    assert_int_equal(rtable_join(t, lb, s + RMSG_SID_LEN, 1, "room", 4, NULL), 0);
    sum[0] = sum[1] = 0;
    assert_int_equal(rtable_uid_links_each(t, "u", 1, count_links, sum), 2);
    rtable_link_forget(t, la, NULL);
    assert_int_equal(rtable_uid_sessions(t, "u", 1), 1);
    assert_int_equal(rtable_members(t, "room", 4), 1);
    sum[0] = sum[1] = 0;
    assert_int_equal(rtable_uid_links_each(t, "u", 1, count_links, sum), 1);
    assert_int_equal(sum[1], 1);
    rtable_link_forget(t, lb, NULL);
    rtable_totals(t, &tot);
    assert_int_equal(tot.uids, 0);
    assert_int_equal(rtable_member_channels(t), 0);
    rtable_free(t);
    free(s);
}

struct member_seen {
    size_t n, bound;
};

static void member_seen(const unsigned char *sid, void *owner, const unsigned char *uid,
                        size_t uidlen, void *arg)
{
    struct member_seen *m = arg;
    (void)sid;
    (void)owner;
    m->n++;
    if (uid != NULL && uidlen == 3 && memcmp(uid, "bob", 3) == 0)
        m->bound++;
}

static void channel_seen(const unsigned char *name, size_t len, size_t members, void *arg)
{
    size_t *sum = arg;
    (void)name;
    sum[0]++;
    sum[1] += members * len;
}

static void test_members(void **state)
{
    struct rtable *t = rtable_new();
    int a, b;
    struct rtable_link *la = rtable_link_add(t, &a, 1, 0), *lb = rtable_link_add(t, &b, 2, 0);
    unsigned char *s = sids_make(0, 5);
    size_t applied, sum[2] = {0, 0};
    struct member_seen seen = {0, 0};

    rtable_sessions_add(t, la, s, 3);
    rtable_sessions_add(t, lb, s + 3 * RMSG_SID_LEN, 2);
    rtable_bind(t, NULL, s, 1, "bob", 3, NULL);
    assert_int_equal(rtable_join(t, NULL, s, 5, "r", 1, &applied), 0);
    assert_int_equal(applied, 5);
    /* twice: still one membership each */
    assert_int_equal(rtable_join(t, NULL, s, 5, "r", 1, &applied), 0);
    assert_int_equal(rtable_members(t, "r", 1), 5);
    assert_int_equal(rtable_member_links_each(t, "r", 1, count_links, sum), 2);
    assert_int_equal(sum[1], 5);
    rtable_members_each(t, "r", 1, member_seen, &seen);
    assert_int_equal(seen.n, 5);
    assert_int_equal(seen.bound, 1);
    /* a report from lb about la's sessions is ignored */
    assert_int_equal(rtable_leave(t, lb, s, 3, "r", 1), 0);
    assert_int_equal(rtable_join(t, lb, s, 4, "xy", 2, &applied), 0);
    assert_int_equal(applied, 1);
    sum[0] = sum[1] = 0;
    rtable_member_channels_each(t, channel_seen, sum);
    assert_int_equal(sum[0], 2);
    assert_int_equal(sum[1], 5 * 1 + 1 * 2);
    assert_int_equal(rtable_leave(t, NULL, s, 5, "r", 1), 5);
    assert_int_equal(rtable_members(t, "r", 1), 0);
    assert_int_equal(rtable_member_links_each(t, "r", 1, NULL, NULL), 0);
    assert_int_equal(rtable_leave(t, NULL, s, 5, "nope", 4), 0);
    assert_int_equal(rtable_member_channels(t), 1);
    /* bounds */
    assert_int_equal(rtable_join(t, NULL, s, 1, "", 0, NULL), -1);
    rtable_free(t);
    free(s);
}

static void test_uid_split(void **state)
{
    struct rtable *t = rtable_new();
    int a, b, c;
    struct rtable_link *la = rtable_link_add(t, &a, 1, 0), *lb = rtable_link_add(t, &b, 2, 0);
    struct rtable_link *lc = rtable_link_add(t, &c, 3, 0);
    unsigned char *s = sids_make(0, 4);
    struct rtable_uid_split sp = {0};
    static const unsigned char list[] = "\x03" "bob\x05" "alice\x04" "nope\x03" "bob";

    rtable_sessions_add(t, la, s, 2);
    rtable_sessions_add(t, lb, s + 2 * RMSG_SID_LEN, 1);
    rtable_sessions_add(t, lc, s + 3 * RMSG_SID_LEN, 1);
    rtable_bind(t, NULL, s, 1, "alice", 5, NULL);
    rtable_bind(t, NULL, s + RMSG_SID_LEN, 1, "bob", 3, NULL);
    rtable_bind(t, NULL, s + 2 * RMSG_SID_LEN, 1, "bob", 3, NULL);
    /* lc holds no listed uid: no group */
    assert_int_equal(rtable_uid_split(t, list, sizeof(list) - 1, &sp), 0);
    assert_int_equal(sp.ngroups, 2);
    assert_int_equal(sp.unknown, 1);
    for (size_t g = 0; g < sp.ngroups; g++) {
        if (sp.groups[g].owner == &a) {
            assert_int_equal(sp.groups[g].len, 4 + 6 + 4);
            assert_memory_equal(sp.groups[g].list, "\x03" "bob\x05" "alice\x03" "bob", 14);
        } else {
            assert_ptr_equal(sp.groups[g].owner, &b);
            assert_int_equal(sp.groups[g].len, 8);
            assert_memory_equal(sp.groups[g].list, "\x03" "bob\x03" "bob", 8);
        }
    }
    assert_ptr_equal(sp.groups[0].owner, &a); /* order of first uid */
    /* reused: nobody */
    assert_int_equal(rtable_uid_split(t, (const unsigned char *)"\x01z", 2, &sp), 0);
    assert_int_equal(sp.ngroups, 0);
    assert_int_equal(sp.unknown, 1);
    rtable_uid_split_free(&sp);
    rtable_free(t);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_links),
        cmocka_unit_test(test_sessions),
        cmocka_unit_test(test_conn_moves),
        cmocka_unit_test(test_split_many),
        cmocka_unit_test(test_split_duplicates),
        cmocka_unit_test(test_channels),
        cmocka_unit_test(test_with_sessions),
        cmocka_unit_test(test_forget),
        cmocka_unit_test(test_uids),
        cmocka_unit_test(test_uids_members_go_with_session),
        cmocka_unit_test(test_members),
        cmocka_unit_test(test_uid_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
