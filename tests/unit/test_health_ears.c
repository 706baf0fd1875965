/* Unit tests: health_absence's EARS C1/C2/C3 and normal quantile against R surveillance's earsC. */
#include "../../plugins/health_absence/ears.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

/*
 * Reference values: computed once, by hand, with R 4.2 and Debian 12's
 * r-cran-surveillance 1.20.3 (apt-get install r-cran-surveillance), e.g.
 *
 *   y <- c(3,5,2,4,6,3,4,5,2,3,4,9,12,4,3,5,2,15,4,3)
 *   s <- sts(observed = matrix(y, ncol = 1), start = c(2026, 1), frequency = 365)
 *   r <- earsC(s, control = list(method = "C1", alpha = 0.001, minSigma = 0))
 *   sprintf("%.12f", upperbound(r)[, 1]); alarms(r)[, 1]
 *
 * and the same with method "C2", "C3" (alpha 0.025) and minSigma 0.5 and 1 on
 * the sparse series. The test suite does not need R.
 */
static const double s_y[] = {3, 5, 2, 4, 6, 3, 4, 5, 2, 3, 4, 9, 12, 4, 3, 5, 2, 15, 4, 3};
static const double s_sparse[] = {0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 2, 0, 3};

#define N(a) (sizeof(a) / sizeof((a)[0]))

struct s_ref {
    size_t t; /* 1-based index of the day assessed, as in R */
    double upper;
    bool alarm;
};

/* Runs alg on series[0..t-1] and compares with earsC's upper bound and alarm. */
static void s_check(enum ha_ears_alg alg, const double *series, const struct s_ref *ref, size_t n,
                    double z, double min_sigma)
{
    for (size_t i = 0; i < n; i++) {
        struct ha_ears_result r;
        assert_int_equal(ha_ears(alg, series, ref[i].t, 7, z, min_sigma, &r), 0);
        if (fabs(r.upper - ref[i].upper) > 1e-9)
            fail_msg("%s t=%zu min_sigma=%g: upper %.12f, earsC %.12f", ha_ears_names[alg],
                     ref[i].t, min_sigma, r.upper, ref[i].upper);
        if (r.alarm != ref[i].alarm)
            fail_msg("%s t=%zu: alarm %d, earsC %d", ha_ears_names[alg], ref[i].t, r.alarm,
                     ref[i].alarm);
        assert_true(r.observed == series[ref[i].t - 1]);
    }
}

static void test_qnorm(void **state)
{
    (void)state;
    static const struct {
        double p, q; /* R: qnorm(p) */
    } cases[] = {
        {0.999, 3.090232306167813},    {0.975, 1.959963984540054},
        {0.001, -3.090232306167813},   {1e-10, -6.3613409024040557},
        {0.9, 1.2815515655446008},     {0.995, 2.5758293035488999},
        {0.99999, 4.2648907939238399}, {0.5, 0.0},
    };
    for (size_t i = 0; i < N(cases); i++)
        if (fabs(ha_qnorm(cases[i].p) - cases[i].q) > 1e-12)
            fail_msg("qnorm(%g) = %.16f, R %.16f", cases[i].p, ha_qnorm(cases[i].p), cases[i].q);
    assert_true(isnan(ha_qnorm(0.0)));
    assert_true(isnan(ha_qnorm(1.0)));
}

static void test_c1_matches_earsC(void **state)
{
    (void)state;
    static const struct s_ref ref[] = {
        {8, 8.014078294464, false},   {9, 8.299792580178, false},   {10, 8.337355083201, false},
        {11, 8.014078294464, false},  {12, 8.014078294464, true},   {13, 11.358293554132, true},
        {14, 16.692994305782, false}, {15, 16.692994305782, false}, {16, 16.808909167955, false},
        {17, 16.376600138553, false}, {18, 16.692994305782, false}, {19, 22.431292474874, false},
        {20, 21.865010553465, false},
    };
    s_check(HA_EARS_C1, s_y, ref, N(ref), ha_qnorm(0.999), 0.0);
    /* Every baseline sd here is above 1, so a floor of 1 changes nothing (earsC agrees). */
    s_check(HA_EARS_C1, s_y, ref, N(ref), ha_qnorm(0.999), 1.0);
}

static void test_c2_matches_earsC(void **state)
{
    (void)state;
    static const struct s_ref ref[] = {
        {10, 8.014078294464, false},  {11, 8.299792580178, false},  {12, 8.337355083201, true},
        {13, 8.014078294464, true},   {14, 8.014078294464, false},  {15, 11.358293554132, false},
        {16, 16.692994305782, false}, {17, 16.692994305782, false}, {18, 16.808909167955, false},
        {19, 16.376600138553, false}, {20, 16.692994305782, false},
    };
    s_check(HA_EARS_C2, s_y, ref, N(ref), ha_qnorm(0.999), 0.0);
}

static void test_sparse_floor_matches_earsC(void **state)
{
    (void)state;
    static const struct s_ref c1_0[] = {
        {8, 0.0, true},
        {9, 1.310855167934, false},
        {10, 1.310855167934, false},
        {11, 1.310855167934, true},
        {12, 2.859953204817, false},
        {13, 2.859953204817, true},
    };
    static const struct s_ref c1_half[] = {
        {8, 1.545116153084, false}, {9, 1.687973295941, false},  {10, 1.687973295941, false},
        {11, 1.687973295941, true}, {12, 2.859953204817, false}, {13, 2.859953204817, true},
    };
    static const struct s_ref c1_one[] = {
        {8, 3.090232306168, false},  {9, 3.233089449025, false},  {10, 3.233089449025, false},
        {11, 3.233089449025, false}, {12, 3.518803734739, false}, {13, 3.518803734739, false},
    };
    static const struct s_ref c2_half[] = {
        {10, 1.545116153084, false},
        {11, 1.687973295941, true},
        {12, 1.687973295941, false},
        {13, 1.687973295941, true},
    };
    double z = ha_qnorm(0.999);
    s_check(HA_EARS_C1, s_sparse, c1_0, N(c1_0), z, 0.0);
    s_check(HA_EARS_C1, s_sparse, c1_half, N(c1_half), z, 0.5);
    s_check(HA_EARS_C1, s_sparse, c1_one, N(c1_one), z, 1.0);
    s_check(HA_EARS_C2, s_sparse, c2_half, N(c2_half), z, 0.5);
}

/*
 * C3. Our statistic is the published one, sum over t-2..t of max(0, C2 - 1);
 * the reference values were computed in R from the C2 means and sds earsC
 * uses (baseline t-9..t-3, sd with n - 1). earsC 1.20.3's own C3 bound is
 * y(t) + sd(t) * (z - lagged), the documented quirk (the observation stands
 * where the C2 mean should): where the lagged part is below z we check that
 * our bound is exactly what that implies, mean(t) + sd(t) + (U3 - y(t)).
 */
static void test_c3_statistic(void **state)
{
    (void)state;
    static const struct {
        size_t t;
        double mean2, sd2, c3;
        bool alarm;
        double r_upper; /* earsC C3 upperbound; < 0 where the lagged part exceeds z */
    } ref[] = {
        {12, 3.714285714286, 1.496026483086, 2.533168928140, true, 11.932158026767},
        {13, 3.857142857143, 1.345185418269, 7.586503310351, true, -1},
        {14, 3.857142857143, 1.345185418269, 7.586503310351, true, -1},
        {15, 4.285714285714, 2.288688541085, 5.053334382211, true, -1},
        {16, 5.571428571429, 3.598941643370, 0.0, false, 12.053796003466},
        {17, 5.571428571429, 3.598941643370, 0.0, false, 9.053796003466},
        {18, 5.285714285714, 3.728908942943, 1.605128165618, false, 22.308527229798},
        {19, 5.714285714286, 3.450327796712, 1.605128165618, false, 5.224299889296},
        {20, 5.571428571429, 3.598941643370, 1.605128165618, false, 4.277033405278},
    };
    double z = ha_qnorm(0.975);
    for (size_t i = 0; i < N(ref); i++) {
        struct ha_ears_result r;
        assert_int_equal(ha_ears(HA_EARS_C3, s_y, ref[i].t, 7, z, 0.0, &r), 0);
        if (fabs(r.expected - ref[i].mean2) > 1e-9 || fabs(r.sd - ref[i].sd2) > 1e-9 ||
            fabs(r.statistic - ref[i].c3) > 1e-9 || r.alarm != ref[i].alarm)
            fail_msg("C3 t=%zu: mean %.12f sd %.12f C3 %.12f alarm %d", ref[i].t, r.expected, r.sd,
                     r.statistic, r.alarm);
        if (ref[i].r_upper >= 0) {
            double want = ref[i].mean2 + ref[i].sd2 + ref[i].r_upper - s_y[ref[i].t - 1];
            if (fabs(r.upper - want) > 1e-9)
                fail_msg("C3 t=%zu: upper %.12f, from earsC %.12f", ref[i].t, r.upper, want);
        } else {
            assert_true(r.upper == 0.0);
        }
    }
}

/* Too short a series is refused, not read out of bounds; bad parameters too. */
static void test_ears_limits(void **state)
{
    (void)state;
    struct ha_ears_result r;
    static const struct {
        enum ha_ears_alg alg;
        size_t need;
    } cases[] = {{HA_EARS_C1, 8}, {HA_EARS_C2, 10}, {HA_EARS_C3, 12}};
    for (size_t i = 0; i < N(cases); i++) {
        assert_int_equal(ha_ears_needed(cases[i].alg, 7), cases[i].need);
        assert_int_equal(ha_ears(cases[i].alg, s_y, cases[i].need - 1, 7, 3.0, 0.0, &r), -ERANGE);
        assert_int_equal(ha_ears(cases[i].alg, s_y, cases[i].need, 7, 3.0, 0.0, &r), 0);
    }
    assert_int_equal(ha_ears(HA_EARS_C1, s_y, 20, 2, 3.0, 0.0, &r), -EINVAL);
    assert_int_equal(ha_ears(HA_EARS_C1, s_y, 20, 7, 3.0, -1.0, &r), -EINVAL);
    /* A flat baseline without a floor: any excess alarms, the baseline value does not. */
    static const double flat[] = {2, 2, 2, 2, 2, 2, 2, 2};
    assert_int_equal(ha_ears(HA_EARS_C1, flat, 8, 7, 3.0, 0.0, &r), 0);
    assert_false(r.alarm);
    static const double flat_up[] = {2, 2, 2, 2, 2, 2, 2, 3};
    assert_int_equal(ha_ears(HA_EARS_C1, flat_up, 8, 7, 3.0, 0.0, &r), 0);
    assert_true(r.alarm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qnorm),
        cmocka_unit_test(test_c1_matches_earsC),
        cmocka_unit_test(test_c2_matches_earsC),
        cmocka_unit_test(test_sparse_floor_matches_earsC),
        cmocka_unit_test(test_c3_statistic),
        cmocka_unit_test(test_ears_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
