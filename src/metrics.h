/* metrics.h - the Prometheus text exposition format (version 0.0.4), written
 * into an evbuffer: a metric's HELP and TYPE lines, its samples (with at most
 * one label here, its value escaped), and a histogram's buckets, sum and
 * count. Pure formatting: no I/O, no state; the master's /metrics and the
 * router's (router_metrics.c) both write through it. */
#ifndef FOOKING_METRICS_H
#define FOOKING_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* "# HELP name help" and "# TYPE name type" (type: "counter", "gauge",
 * "histogram"); backslashes and line feeds in help are escaped. */
void metrics_header(struct evbuffer *out, const char *name, const char *type, const char *help);
/* "name value" or, with label set, name{label="value"} value, where the label
 * value's backslashes, double quotes and line feeds are escaped. */
void metrics_u64(struct evbuffer *out, const char *name, const char *label, const char *lvalue,
                 uint64_t v);
void metrics_i64(struct evbuffer *out, const char *name, const char *label, const char *lvalue,
                 int64_t v);
void metrics_double(struct evbuffer *out, const char *name, const char *label, const char *lvalue,
                    double v);
/* name_bucket{le="bound[i]"} for the n bounds (ascending) and le="+Inf",
 * cumulative; name_sum and name_count. counts[0..n] are per bucket (not
 * cumulative): counts[i] observations in (bound[i-1], bound[i]], counts[n]
 * above the last bound. */
void metrics_histogram(struct evbuffer *out, const char *name, const double *bounds, size_t n,
                       const uint64_t *counts, double sum);
/* The bucket of an observation v among the n bounds: the first i with
 * v <= bounds[i], or n. */
size_t metrics_bucket(const double *bounds, size_t n, double v);

#endif
