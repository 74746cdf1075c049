/* router_metrics.c - the router's /metrics (see router_metrics.h). Sizes are
 * read from the tables when asked, never kept twice; counters come from
 * router.c's struct router_counters. In bus mode the router keeps no tables
 * (every count is in Redis): its sizes are 0 and its bus is shown instead. */
#include "router_metrics.h"

#include "metrics.h"
#include "rtable.h"

static const char *const router_drops[ROUTER_DROP_N] = {
    [ROUTER_DROP_ERROR] = "error",       [ROUTER_DROP_CLOSED] = "closed",
    [ROUTER_DROP_TIMEOUT] = "timeout",   [ROUTER_DROP_OUTPUT_LIMIT] = "output_limit",
    [ROUTER_DROP_REPLACED] = "replaced",
};

static void router_metrics_gauge(struct evbuffer *out, const char *name, const char *help,
                                 int64_t v)
{
    metrics_header(out, name, "gauge", help);
    metrics_i64(out, name, NULL, NULL, v);
}

void router_metrics_write(struct router *r, struct evbuffer *out)
{
    const struct router_counters *ctr = router_counters(r);
    struct rtable_totals tot;
    const char *n;

    rtable_totals(router_tables(r), &tot);
    router_metrics_gauge(out, "fooking_router_links", "Gateway links (one per gateway worker).",
                         (int64_t)tot.links);
    router_metrics_gauge(out, "fooking_router_sessions", "Sessions the gateway links hold.",
                         (int64_t)tot.sessions);
    router_metrics_gauge(out, "fooking_router_uids", "Distinct uids bound to sessions.",
                         (int64_t)tot.uids);
    router_metrics_gauge(out, "fooking_router_channels", "Channels with at least one member.",
                         (int64_t)tot.channels);

    n = "fooking_router_commands_total";
    metrics_header(out, n, "counter",
                   "Messages received, by type: backends' commands and queries, and the "
                   "gateways' own (CONN, CLOSE, CH_SUB, ...).");
    for (int t = 0; t <= RMSG_TYPE_MAX; t++) {
        const char *name = rmsg_type_name(t);
        if (name[0] != '?')
            metrics_u64(out, n, "type", name, counter_get(&ctr->messages[t]));
    }
    n = "fooking_router_deliveries_total";
    metrics_header(out, n, "counter", "Commands queued on gateway links (one per link reached).");
    metrics_u64(out, n, NULL, NULL, counter_get(&ctr->deliveries));
    n = "fooking_router_links_dropped_total";
    metrics_header(out, n, "counter", "Gateway links dropped, by reason.");
    for (int d = 0; d < ROUTER_DROP_N; d++)
        metrics_u64(out, n, "reason", router_drops[d], counter_get(&ctr->links_dropped[d]));

    if (router_on_bus(r)) {
        n = "fooking_bus_connected";
        metrics_header(out, n, "gauge", "Bus (BUS) connections up, by kind.");
        metrics_i64(out, n, "connection", "subscribe", gauge_get(&ctr->bus.connected[0]));
        metrics_i64(out, n, "connection", "command", gauge_get(&ctr->bus.connected[1]));
        n = "fooking_bus_reconnects_total";
        metrics_header(out, n, "counter", "Bus connections up again after being lost.");
        metrics_u64(out, n, NULL, NULL, counter_get(&ctr->bus.reconnects));
        n = "fooking_bus_publishes_dropped_total";
        metrics_header(
            out, n, "counter",
            "Publishes and other bus commands dropped (bus down, or too many replies pending).");
        metrics_u64(out, n, NULL, NULL, counter_get(&ctr->bus.dropped));
    }
}
