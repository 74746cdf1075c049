/* metrics.c - the Prometheus text format (see metrics.h). The label values
 * come from this process (reason names, command types), but are escaped all
 * the same: the format allows any UTF-8 there. */
#include "metrics.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* s with the bytes of `special` escaped as the format wants (\\, \", \n). */
static void metrics_escaped(struct evbuffer *out, const char *s, const char *special)
{
    const char *run = s;
    for (; *s; s++) {
        if (!strchr(special, *s))
            continue;
        evbuffer_add(out, run, (size_t)(s - run));
        evbuffer_add(out, *s == '\n' ? "\\n" : *s == '"' ? "\\\"" : "\\\\", 2);
        run = s + 1;
    }
    evbuffer_add(out, run, (size_t)(s - run));
}

void metrics_header(struct evbuffer *out, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(out, "# HELP %s ", name);
    metrics_escaped(out, help, "\\\n");
    evbuffer_add_printf(out, "\n# TYPE %s %s\n", name, type);
}

static void metrics_name(struct evbuffer *out, const char *name, const char *label,
                         const char *lvalue)
{
    evbuffer_add(out, name, strlen(name));
    if (!label)
        return;
    evbuffer_add_printf(out, "{%s=\"", label);
    metrics_escaped(out, lvalue, "\\\"\n");
    evbuffer_add(out, "\"}", 2);
}

void metrics_u64(struct evbuffer *out, const char *name, const char *label, const char *lvalue,
                 uint64_t v)
{
    metrics_name(out, name, label, lvalue);
    evbuffer_add_printf(out, " %" PRIu64 "\n", v);
}

void metrics_i64(struct evbuffer *out, const char *name, const char *label, const char *lvalue,
                 int64_t v)
{
    metrics_name(out, name, label, lvalue);
    evbuffer_add_printf(out, " %" PRId64 "\n", v);
}

/* Go's float syntax for what printf cannot spell the same way. */
static void metrics_value(struct evbuffer *out, double v)
{
    if (isnan(v))
        evbuffer_add(out, "NaN", 3);
    else if (isinf(v))
        evbuffer_add_printf(out, "%sInf", v < 0 ? "-" : "+");
    else
        evbuffer_add_printf(out, "%.17g", v);
}

void metrics_double(struct evbuffer *out, const char *name, const char *label, const char *lvalue,
                    double v)
{
    metrics_name(out, name, label, lvalue);
    evbuffer_add(out, " ", 1);
    metrics_value(out, v);
    evbuffer_add(out, "\n", 1);
}

void metrics_histogram(struct evbuffer *out, const char *name, const double *bounds, size_t n,
                       const uint64_t *counts, double sum)
{
    char le[32];
    uint64_t total = 0;
    for (size_t i = 0; i <= n; i++) {
        total += counts[i];
        if (i < n)
            snprintf(le, sizeof(le), "%g", bounds[i]);
        else
            snprintf(le, sizeof(le), "+Inf");
        evbuffer_add_printf(out, "%s_bucket{le=\"%s\"} %" PRIu64 "\n", name, le, total);
    }
    evbuffer_add_printf(out, "%s_sum ", name);
    metrics_value(out, sum);
    evbuffer_add_printf(out, "\n%s_count %" PRIu64 "\n", name, total);
}

size_t metrics_bucket(const double *bounds, size_t n, double v)
{
    size_t i = 0;
    while (i < n && v > bounds[i])
        i++;
    return i;
}
