/*
 * Latency histograms for the `stats` reply: counts in buckets an eighth of a power of two
 * wide (a bucket's values are within 12.5 % of each other), kept with atomics so that the
 * ingest thread adds while the main thread reads. Cumulative since start: a reader takes two
 * replies and subtracts the buckets to see an interval.
 */
#include "internal.h"

/* Values under S_LINEAR µs each have a bucket; above, eight buckets per power of two. */
#define S_LINEAR 16
#define S_SUB 8

static size_t s_bucket(uint64_t us)
{
    if (us < S_LINEAR)
        return (size_t)us;
    int e = 63 - __builtin_clzll(us); /* 2^e <= us < 2^(e+1), e >= 4 */
    size_t b = S_LINEAR + (size_t)(e - 4) * S_SUB + (size_t)((us >> (e - 3)) & (S_SUB - 1));
    return b < SC__HIST_BUCKETS ? b : SC__HIST_BUCKETS - 1;
}

/* The largest value bucket b holds. */
static uint64_t s_upper(size_t b)
{
    if (b < S_LINEAR)
        return b;
    int e = (int)((b - S_LINEAR) / S_SUB) + 4;
    uint64_t sub = (b - S_LINEAR) % S_SUB;
    return ((S_SUB + sub + 1) << (e - 3)) - 1;
}

void sc__hist_add(sc__hist_t *h, int64_t us)
{
    atomic_fetch_add_explicit(&h->n[s_bucket(us > 0 ? (uint64_t)us : 0)], 1, memory_order_relaxed);
}

json_t *sc__hist_percentiles(const json_t *buckets)
{
    static const struct {
        const char *key;
        double q;
    } qs[] = {{"p50_ms", 0.50}, {"p99_ms", 0.99}, {"p999_ms", 0.999}};
    json_int_t count = 0, seen = 0;
    size_t i, qi = 0;
    const json_t *b;
    json_array_foreach(buckets, i, b) count += json_integer_value(json_array_get(b, 1));
    json_t *out = json_pack("{s:I}", "count", count);
    json_array_foreach(buckets, i, b)
    {
        seen += json_integer_value(json_array_get(b, 1));
        double ms = (double)json_integer_value(json_array_get(b, 0)) / 1000.0;
        for (; qi < sizeof qs / sizeof *qs && count > 0 && (double)seen >= qs[qi].q * (double)count;
             qi++)
            json_object_set_new(out, qs[qi].key, json_real(ms));
    }
    for (; qi < sizeof qs / sizeof *qs; qi++)
        json_object_set_new(out, qs[qi].key, json_null());
    return out;
}

json_t *sc__hist_json(const sc__hist_t *h)
{
    json_t *buckets = json_array();
    for (size_t b = 0; b < SC__HIST_BUCKETS; b++) {
        uint64_t n = atomic_load_explicit(&h->n[b], memory_order_relaxed);
        if (n)
            json_array_append_new(buckets,
                                  json_pack("[I, I]", (json_int_t)s_upper(b), (json_int_t)n));
    }
    json_t *out = sc__hist_percentiles(buckets);
    json_object_set_new(out, "buckets", buckets);
    return out;
}
