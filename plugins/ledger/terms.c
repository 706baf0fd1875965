/* ledger: the school calendar (terms per district) and the months the drill minimum applies to. */
#include "ledger.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Year, month and day of a day number. */
static void s_civil(int64_t day, int *y, int *m, int *d)
{
    char buf[16];
    sc_date_format(day, buf);
    *y = atoi(buf);
    *m = atoi(buf + 5);
    *d = atoi(buf + 8);
}

int64_t lg_month_first(int64_t day)
{
    int y, m, d;
    s_civil(day, &y, &m, &d);
    return sc_days_from_civil(y, (unsigned)m, 1);
}

int64_t lg_month_next(int64_t day)
{
    int y, m, d;
    s_civil(day, &y, &m, &d);
    return m == 12 ? sc_days_from_civil(y + 1, 1, 1) : sc_days_from_civil(y, (unsigned)m + 1, 1);
}

/* "MM-DD" (recurring, month*100+day) or "YYYY-MM-DD" (absolute, a day number). */
static int s_term_point(const char *s, bool *absolute, int64_t *out)
{
    char buf[16];
    int64_t day;
    if (!s)
        return -EINVAL;
    if (strlen(s) == 10) {
        *absolute = true;
        return sc_date_parse(s, out);
    }
    if (strlen(s) != 5)
        return -EINVAL;
    snprintf(buf, sizeof buf, "2000-%s", s); /* a leap year, so 02-29 is allowed */
    if (sc_date_parse(buf, &day) < 0)
        return -EINVAL;
    *absolute = false;
    *out = atoi(s) * 100 + atoi(s + 3);
    return 0;
}

/* Parses a list of {from, to} into cal. */
static int s_calendar(sc_ctx_t *ctx, const char *what, const json_t *list, struct lg_calendar *cal)
{
    const json_t *t;
    size_t i;
    if (!json_is_array(list)) {
        SC_LOG_ERR(ctx, "%s: expected a list of {from, to}", what);
        return -EINVAL;
    }
    cal->terms = calloc(json_array_size(list) + 1, sizeof *cal->terms);
    if (!cal->terms)
        return -ENOMEM;
    json_array_foreach(list, i, t)
    {
        bool abs_from = false, abs_to = false;
        struct lg_term *term = &cal->terms[cal->nterms];
        if (s_term_point(sc_json_str(t, "from"), &abs_from, &term->from) < 0 ||
            s_term_point(sc_json_str(t, "to"), &abs_to, &term->to) < 0 || abs_from != abs_to ||
            (abs_from && term->to < term->from)) {
            SC_LOG_ERR(ctx,
                       "%s[%zu]: expected {from, to} as \"MM-DD\" or \"YYYY-MM-DD\" (both alike, "
                       "from not after to)",
                       what, i);
            return -EINVAL;
        }
        term->absolute = abs_from;
        cal->nterms++;
    }
    return 0;
}

int lg_terms_load(sc_ctx_t *ctx, lg_state_t *st, const json_t *terms, const json_t *district_terms)
{
    size_t n = 1 + json_array_size(district_terms), i;
    const json_t *dt;
    int rc;
    st->calendars = calloc(n, sizeof *st->calendars);
    if (!st->calendars)
        return -ENOMEM;
    st->ncalendars = 1;
    if ((rc = s_calendar(ctx, "ledger.terms", terms, &st->calendars[0])) < 0)
        return rc;
    if (district_terms && !json_is_array(district_terms)) {
        SC_LOG_ERR(ctx, "ledger.district_terms: expected a list of {district, terms}");
        return -EINVAL;
    }
    json_array_foreach(district_terms, i, dt)
    {
        struct lg_calendar *cal = &st->calendars[st->ncalendars];
        char what[64];
        const char *district = sc_json_str(dt, "district");
        if (!district) {
            SC_LOG_ERR(ctx, "ledger.district_terms[%zu].district: required", i);
            return -EINVAL;
        }
        if (!(cal->district = strdup(district)))
            return -ENOMEM;
        st->ncalendars++;
        snprintf(what, sizeof what, "ledger.district_terms[%zu].terms", i);
        if ((rc = s_calendar(ctx, what, json_object_get(dt, "terms"), cal)) < 0)
            return rc;
    }
    return 0;
}

void lg_terms_free(lg_state_t *st)
{
    for (size_t i = 0; i < st->ncalendars; i++) {
        free(st->calendars[i].district);
        free(st->calendars[i].terms);
    }
    free(st->calendars);
    st->calendars = NULL;
    st->ncalendars = 0;
}

static const struct lg_calendar *s_calendar_of(const lg_state_t *st, const char *district)
{
    for (size_t i = 1; district && i < st->ncalendars; i++)
        if (strcmp(st->calendars[i].district, district) == 0)
            return &st->calendars[i];
    return &st->calendars[0];
}

bool lg_in_term(const lg_state_t *st, const char *district, int64_t day)
{
    const struct lg_calendar *cal = s_calendar_of(st, district);
    int y, m, d;
    s_civil(day, &y, &m, &d);
    int64_t md = m * 100 + d;
    for (size_t i = 0; i < cal->nterms; i++) {
        const struct lg_term *t = &cal->terms[i];
        if (t->absolute        ? (day >= t->from && day <= t->to)
            : t->from <= t->to ? (md >= t->from && md <= t->to)
                               : (md >= t->from || md <= t->to))
            return true;
    }
    return false;
}

int lg_month_term_days(const lg_state_t *st, const char *district, int64_t month_first,
                       int64_t *last_term_day)
{
    int64_t end = lg_month_next(month_first);
    int n = 0;
    for (int64_t day = month_first; day < end; day++) {
        if (lg_in_term(st, district, day)) {
            n++;
            if (last_term_day)
                *last_term_day = day;
        }
    }
    return n;
}

int lg_next_checked_month(const lg_state_t *st, const char *district, int64_t month_first,
                          int64_t *month, int64_t *due_day)
{
    int64_t m = lg_month_first(month_first);
    for (int i = 0; i < 36; i++, m = lg_month_next(m)) {
        int64_t last = m;
        int n = lg_month_term_days(st, district, m, &last);
        if (n > 0 && n >= st->drill_min_term_days) {
            *month = m;
            *due_day = last + 1;
            return 0;
        }
    }
    return -ENOENT;
}
