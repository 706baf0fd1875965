/* RFC 3339 times, dates and durations, without the C library's time-zone state. */
#include <safecampus/util.h>

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Howard Hinnant's days_from_civil: exact for the proleptic Gregorian calendar. */
int64_t sc_days_from_civil(int y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void s_civil_from_days(int64_t z, int *y, unsigned *m, unsigned *d)
{
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = (unsigned)(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int)(yoe + era * 400) + (*m <= 2);
}

static int s_days_in_month(int y, unsigned m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : days[m - 1];
}

/* Reads exactly n digits; returns -1 when they are not there. */
static int s_digits(const char **p, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return -1;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    return v;
}

static int s_parse_date(const char **p, int *y, int *mo, int *d)
{
    *y = s_digits(p, 4);
    if (*y < 0 || **p != '-')
        return -EINVAL;
    (*p)++;
    *mo = s_digits(p, 2);
    if (*mo < 1 || *mo > 12 || **p != '-')
        return -EINVAL;
    (*p)++;
    *d = s_digits(p, 2);
    if (*d < 1 || *d > s_days_in_month(*y, (unsigned)*mo))
        return -EINVAL;
    return 0;
}

/*
 * Shared by the strict RFC 3339 parser and the reader of PostgreSQL's ISO
 * output ("2026-06-18 00:15:00.5+00"), which differs only in the separator
 * and an offset without minutes.
 */
static int s_parse(const char *s, sc_time_t *out, bool pg)
{
    const char *p = s;
    int y, mo, d;
    if (!s || s_parse_date(&p, &y, &mo, &d) < 0)
        return -EINVAL;
    if (!(*p == 'T' || *p == 't' || (pg && *p == ' ')))
        return -EINVAL;
    p++;
    int h = s_digits(&p, 2);
    if (h < 0 || h > 23 || *p++ != ':')
        return -EINVAL;
    int mi = s_digits(&p, 2);
    if (mi < 0 || mi > 59 || *p++ != ':')
        return -EINVAL;
    int se = s_digits(&p, 2);
    if (se < 0 || se > 60) /* a leap second is read as :59 plus one */
        return -EINVAL;
    int64_t usec = 0;
    if (*p == '.') {
        p++;
        int n = 0;
        int64_t scale = 100000;
        while (isdigit((unsigned char)*p)) {
            if (n < 6)
                usec += (*p - '0') * scale;
            scale /= 10;
            n++;
            p++;
        }
        if (n == 0)
            return -EINVAL;
    }
    int64_t offset = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1;
        int oh = s_digits(&p, 2);
        int om = 0;
        if (oh < 0 || oh > 23)
            return -EINVAL;
        if (*p == ':') {
            p++;
            om = s_digits(&p, 2);
            if (om < 0 || om > 59)
                return -EINVAL;
        } else if (!pg) {
            return -EINVAL;
        }
        offset = sign * (oh * 3600 + om * 60);
    } else {
        return -EINVAL;
    }
    if (*p != '\0')
        return -EINVAL;
    int64_t secs =
        sc_days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + se - offset;
    /* Years 0001 to 9999 in UTC too, so that every time parsed can be written back. */
    if (secs < sc_days_from_civil(1, 1, 1) * 86400 ||
        secs >= sc_days_from_civil(10000, 1, 1) * 86400)
        return -EINVAL;
    *out = secs * SC_USEC_PER_SEC + usec;
    return 0;
}

int sc_time_parse(const char *s, sc_time_t *out)
{
    return s_parse(s, out, false);
}

sc_time_t sc_pq_time(const PGresult *res, int row, int col, sc_time_t def)
{
    sc_time_t t;
    if (PQgetisnull(res, row, col) || s_parse(PQgetvalue(res, row, col), &t, true) < 0)
        return def;
    return t;
}

char *sc_time_format(sc_time_t t, char *buf)
{
    int64_t secs = t / SC_USEC_PER_SEC;
    int64_t usec = t % SC_USEC_PER_SEC;
    if (usec < 0) {
        usec += SC_USEC_PER_SEC;
        secs--;
    }
    int64_t days = secs / 86400;
    int64_t rem = secs % 86400;
    if (rem < 0) {
        rem += 86400;
        days--;
    }
    int y;
    unsigned m, d;
    s_civil_from_days(days, &y, &m, &d);
    int n = snprintf(buf, SC_TIME_LEN, "%04d-%02u-%02uT%02d:%02d:%02d", y, m, d, (int)(rem / 3600),
                     (int)(rem / 60 % 60), (int)(rem % 60));
    if (usec)
        n += snprintf(buf + n, (size_t)(SC_TIME_LEN - n), ".%06d", (int)usec);
    snprintf(buf + n, (size_t)(SC_TIME_LEN - n), "Z");
    return buf;
}

int sc_date_parse(const char *s, int64_t *days)
{
    const char *p = s;
    int y, mo, d;
    if (!s || s_parse_date(&p, &y, &mo, &d) < 0 || *p != '\0')
        return -EINVAL;
    *days = sc_days_from_civil(y, (unsigned)mo, (unsigned)d);
    return 0;
}

char *sc_date_format(int64_t days, char *buf)
{
    int y;
    unsigned m, d;
    s_civil_from_days(days, &y, &m, &d);
    snprintf(buf, 11, "%04d-%02u-%02u", y, m, d);
    return buf;
}

int sc_duration_parse(const char *s, int64_t *seconds)
{
    if (!s || !*s)
        return -EINVAL;
    int64_t total = 0;
    const char *p = s;
    while (*p) {
        if (!isdigit((unsigned char)*p))
            return -EINVAL;
        int64_t v = 0;
        while (isdigit((unsigned char)*p)) {
            v = v * 10 + (*p++ - '0');
            if (v > SC_DURATION_MAX)
                return -EINVAL;
        }
        int64_t unit;
        switch (*p) {
        case '\0':
            if (p != s + strspn(s, "0123456789")) /* a bare number only on its own */
                return -EINVAL;
            unit = 1;
            break;
        case 's':
            unit = 1;
            break;
        case 'm':
            unit = 60;
            break;
        case 'h':
            unit = 3600;
            break;
        case 'd':
            unit = 86400;
            break;
        case 'w':
            unit = 604800;
            break;
        default:
            return -EINVAL;
        }
        if (*p)
            p++;
        if (v > (SC_DURATION_MAX - total) / unit)
            return -EINVAL;
        total += v * unit;
    }
    *seconds = total;
    return 0;
}

bool sc_tz_known(const char *tz)
{
    if (!tz || !tz[0] || tz[0] == '/' || strstr(tz, "..") ||
        strspn(tz, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/_+-") !=
            strlen(tz))
        return false;
    if (strcmp(tz, "UTC") == 0)
        return true;
    char path[256];
    snprintf(path, sizeof path, "/usr/share/zoneinfo/%s", tz);
    return access(path, R_OK) == 0;
}
