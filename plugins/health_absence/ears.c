/* health_absence: CDC EARS C1, C2 and C3 aberration detection on a daily series (pure). */
#include "health_absence.h"

#include <errno.h>
#include <math.h>

const char *const ha_ears_names[] = {"C1", "C2", "C3", NULL};

/*
 * The lower-tail quantile for 0 < q <= 0.5: a rational first guess
 * (Abramowitz and Stegun 26.2.23, error below 4.5e-4) polished by Halley
 * steps on erfc, which keeps full precision far into the tail.
 */
static double s_lower_quantile(double q)
{
    double t = sqrt(-2.0 * log(q));
    double x = -(t - (2.515517 + 0.802853 * t + 0.010328 * t * t) /
                         (1.0 + 1.432788 * t + 0.189269 * t * t + 0.001308 * t * t * t));
    for (int i = 0; i < 50; i++) {
        double e = 0.5 * erfc(-x / M_SQRT2) - q;
        double pdf = exp(-0.5 * x * x) / sqrt(2.0 * M_PI);
        if (pdf <= 0.0)
            break;
        double u = e / pdf;
        double step = u / (1.0 + 0.5 * x * u);
        x -= step;
        if (fabs(step) <= 1e-15 * fabs(x))
            break;
    }
    return x;
}

double ha_qnorm(double p)
{
    if (!(p > 0.0 && p < 1.0))
        return NAN;
    if (p == 0.5)
        return 0.0;
    return p < 0.5 ? s_lower_quantile(p) : -s_lower_quantile(1.0 - p);
}

size_t ha_ears_needed(enum ha_ears_alg alg, int baseline)
{
    switch (alg) {
    case HA_EARS_C1:
        return (size_t)baseline + 1;
    case HA_EARS_C2:
        return (size_t)baseline + 3;
    case HA_EARS_C3:
        return (size_t)baseline + 5;
    default:
        return 0;
    }
}

/* Mean and sample standard deviation (n - 1) of x[0..n-1]. */
static void s_moments(const double *x, int n, double *mean, double *sd)
{
    double sum = 0.0, ss = 0.0;
    for (int i = 0; i < n; i++)
        sum += x[i];
    *mean = sum / n;
    for (int i = 0; i < n; i++)
        ss += (x[i] - *mean) * (x[i] - *mean);
    *sd = sqrt(ss / (n - 1));
}

/* (y - mean) / sd, with sd 0 read as "any excess is infinitely unusual". */
static double s_standardise(double y, double mean, double sd)
{
    if (sd > 0.0)
        return (y - mean) / sd;
    return y > mean ? INFINITY : (y < mean ? -INFINITY : 0.0);
}

/*
 * The C1/C2 reference statistics for the value at index t: the baseline is the
 * `baseline` values ending `lag` days before t (lag 1 for C1, 3 for C2).
 */
static void s_shewhart(const double *series, size_t t, int baseline, int lag, double min_sigma,
                       double *mean, double *sd, double *stat)
{
    s_moments(series + t - (size_t)lag - (size_t)baseline + 1, baseline, mean, sd);
    if (*sd < min_sigma)
        *sd = min_sigma;
    *stat = s_standardise(series[t], *mean, *sd);
}

int ha_ears(enum ha_ears_alg alg, const double *series, size_t n, int baseline, double z,
            double min_sigma, struct ha_ears_result *out)
{
    if (baseline < 3 || !(min_sigma >= 0.0) || !isfinite(z) || alg >= HA_EARS_N)
        return -EINVAL;
    if (n < ha_ears_needed(alg, baseline))
        return -ERANGE;
    size_t t = n - 1;
    double mean, sd, stat;
    out->observed = series[t];
    if (alg == HA_EARS_C1 || alg == HA_EARS_C2) {
        s_shewhart(series, t, baseline, alg == HA_EARS_C1 ? 1 : 3, min_sigma, &mean, &sd, &stat);
        out->expected = mean;
        out->sd = sd;
        out->statistic = stat;
        out->upper = mean + z * sd;
        out->alarm = series[t] > out->upper;
        return 0;
    }
    /*
     * C3(t) = sum over i = t-2..t of max(0, C2(i) - 1), each C2(i) with its
     * own guarded baseline; alarm when C3(t) exceeds the threshold. This is the
     * published statistic (Hutwagner et al. 2003; DESIGN.md), not the code of
     * R surveillance 1.20.3, whose bound uses the observation in place of the
     * C2 mean and so alarms on the two lagged terms alone.
     */
    double lagged = 0.0;
    for (size_t back = 2; back >= 1; back--) {
        s_shewhart(series, t - back, baseline, 3, min_sigma, &mean, &sd, &stat);
        lagged += fmax(0.0, stat - 1.0);
    }
    s_shewhart(series, t, baseline, 3, min_sigma, &mean, &sd, &stat);
    out->expected = mean;
    out->sd = sd;
    out->statistic = lagged + fmax(0.0, stat - 1.0);
    out->alarm = out->statistic > z;
    /* The value of y(t) that would bring C3 to the threshold; 0 when the lagged
     * part alone is past it (then any count alarms). */
    out->upper = z >= lagged ? fmax(0.0, mean + sd * (1.0 + z - lagged)) : 0.0;
    return 0;
}
