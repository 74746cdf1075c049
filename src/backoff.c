/* backoff.c - see backoff.h. Doubling is exact in binary floating point, so
 * the delays are min * 2^n exactly until they reach max. */
#include "backoff.h"

void backoff_init(struct backoff *b, double min, double max)
{
    b->min = min;
    b->max = max;
    b->next = min;
}

double backoff_next(struct backoff *b)
{
    double now = b->next;

    b->next *= 2;
    if (b->next > b->max)
        b->next = b->max;
    return now;
}

void backoff_reset(struct backoff *b)
{
    b->next = b->min;
}

struct timeval backoff_timeval(double seconds)
{
    struct timeval tv = {(time_t)seconds, (suseconds_t)((seconds - (double)(time_t)seconds) * 1e6)};

    return tv;
}
