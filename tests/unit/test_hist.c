/*
 * Unit tests: the latency histograms of the `stats` reply (daemon/hist.c).
 */
#include "../../daemon/internal.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* cmocka needs the four headers above first. */
#include <cmocka.h>

#include <stdlib.h>

/* The one bucket a histogram holding only `us` reports: its largest value. */
static json_int_t s_only_bucket(int64_t us)
{
    sc__hist_t *h = calloc(1, sizeof *h);
    assert_non_null(h);
    sc__hist_add(h, us);
    json_t *j = sc__hist_json(h);
    const json_t *b = json_object_get(j, "buckets");
    assert_int_equal(json_array_size(b), 1);
    assert_int_equal(json_integer_value(json_array_get(json_array_get(b, 0), 1)), 1);
    json_int_t upper = json_integer_value(json_array_get(json_array_get(b, 0), 0));
    json_decref(j);
    free(h);
    return upper;
}

static void test_a_value_lands_in_a_bucket_an_eighth_wide(void **state)
{
    (void)state;
    for (int64_t us = 0; us < 16; us++)
        assert_int_equal(s_only_bucket(us), us);
    /* Every value from 16 µs to past an hour, and each bucket's edges. */
    for (int64_t us = 16; us < 5000000000LL; us += us / 7 + 1) {
        json_int_t upper = s_only_bucket(us);
        assert_true(upper >= us);
        assert_true((double)upper < (double)us * 1.125 + 1);
        assert_int_equal(s_only_bucket(upper), upper); /* its largest value is its own */
        assert_true(s_only_bucket(upper + 1) > upper); /* the next is the next bucket's */
    }
    assert_int_equal(s_only_bucket(-5), 0); /* a clock step back counts as nothing */
    /* Past the last bucket (about 19 hours): the last one, not out of bounds. */
    assert_int_equal(s_only_bucket(INT64_MAX), s_only_bucket(INT64_MAX / 2));
}

static void test_percentiles_name_the_bucket_that_reaches_them(void **state)
{
    (void)state;
    sc__hist_t *h = calloc(1, sizeof *h);
    assert_non_null(h);
    json_t *j = sc__hist_json(h);
    assert_int_equal(json_integer_value(json_object_get(j, "count")), 0);
    assert_true(json_is_null(json_object_get(j, "p50_ms")));
    assert_true(json_is_null(json_object_get(j, "p999_ms")));
    assert_int_equal(json_array_size(json_object_get(j, "buckets")), 0);
    json_decref(j);

    for (int i = 0; i < 989; i++)
        sc__hist_add(h, 100);
    for (int i = 0; i < 10; i++)
        sc__hist_add(h, 2000);
    sc__hist_add(h, 40000);
    j = sc__hist_json(h);
    assert_int_equal(json_integer_value(json_object_get(j, "count")), 1000);
    double b100 = (double)s_only_bucket(100) / 1000, b2000 = (double)s_only_bucket(2000) / 1000,
           b40000 = (double)s_only_bucket(40000) / 1000;
    assert_float_equal(json_real_value(json_object_get(j, "p50_ms")), b100, 1e-9);
    /* 989 of 1000 is short of the 99th: the next bucket's. */
    assert_float_equal(json_real_value(json_object_get(j, "p99_ms")), b2000, 1e-9);
    assert_float_equal(json_real_value(json_object_get(j, "p999_ms")), b2000, 1e-9);
    sc__hist_add(h, 40000);
    json_decref(j);
    j = sc__hist_json(h);
    assert_float_equal(json_real_value(json_object_get(j, "p999_ms")), b40000, 1e-9);
    const json_t *b = json_object_get(j, "buckets");
    assert_int_equal(json_array_size(b), 3);
    assert_int_equal(json_integer_value(json_array_get(json_array_get(b, 2), 1)), 2);
    /* What a reader subtracting two replies hands back: the same figures from the buckets. */
    json_t *again = sc__hist_percentiles(b);
    json_object_set(again, "buckets", json_object_get(j, "buckets"));
    assert_true(json_equal(again, j));
    json_decref(again);
    json_decref(j);
    free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_value_lands_in_a_bucket_an_eighth_wide),
        cmocka_unit_test(test_percentiles_name_the_bucket_that_reaches_them),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
