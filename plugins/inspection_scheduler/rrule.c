/* inspection_scheduler: RFC 5545 occurrences through libical, in a school's local time. */
#include "rrule.h"

#include <safecampus/util.h>

#include <errno.h>
#include <libical/ical.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_DAY 86400
/* A rule is iterated at most this many times per call, whatever it says. */
#define S_MAX_STEPS 2000000

void rr_civil(int64_t days, int *year, int *month, int *day)
{
    /* Howard Hinnant's civil_from_days. */
    days += 719468;
    int64_t era = (days >= 0 ? days : days - 146096) / 146097;
    int64_t doe = days - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = yoe + era * 400;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t d = doy - (153 * mp + 2) / 5 + 1;
    int64_t m = mp < 10 ? mp + 3 : mp - 9;
    *year = (int)(y + (m <= 2));
    *month = (int)m;
    *day = (int)d;
}

int rr_parse_md(const char *s, int *md)
{
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int m, d, used = 0;
    if (!s || strlen(s) != 5 || sscanf(s, "%2d-%2d%n", &m, &d, &used) != 2 || used != 5 ||
        s[2] != '-' || m < 1 || m > 12 || d < 1 || d > mdays[m - 1])
        return -EINVAL;
    *md = m * 100 + d;
    return 0;
}

void rr_init(void)
{
    icalerror_set_errors_are_fatal(0);
}

void rr_fini(void)
{
    icaltimezone_free_builtin_timezones();
}

/* Strips an optional "RRULE:" and parses; freq is ICAL_NO_RECURRENCE when it does not parse. */
static struct icalrecurrencetype s_parse(const char *rrule)
{
    if (strncasecmp(rrule, "RRULE:", 6) == 0)
        rrule += 6;
    icalerror_clear_errno();
    struct icalrecurrencetype r = icalrecurrencetype_from_string(rrule);
    if (icalerrno != ICAL_NO_ERROR)
        r.freq = ICAL_NO_RECURRENCE;
    return r;
}

int rr_check(const char *rrule, char *err, size_t errlen)
{
    if (!rrule || !*rrule)
        return sc_fail(err, errlen, "is empty");
    if (strchr(rrule, '\n') || strchr(rrule, '\r'))
        return sc_fail(err, errlen, "must be one RRULE value, without DTSTART or line breaks");
    struct icalrecurrencetype r = s_parse(rrule);
    if (r.freq == ICAL_NO_RECURRENCE)
        return sc_fail(err, errlen, "is not an RFC 5545 RRULE (e.g. FREQ=WEEKLY;BYDAY=MO)");
    if (r.freq == ICAL_SECONDLY_RECURRENCE || r.freq == ICAL_MINUTELY_RECURRENCE)
        return sc_fail(err, errlen, "FREQ must be HOURLY or longer");
    if (r.interval < 1)
        return sc_fail(err, errlen, "INTERVAL must be at least 1");
    return 0;
}

static icaltimezone *s_zone(const char *tzid)
{
    if (!tzid || !*tzid || strcmp(tzid, "UTC") == 0)
        return NULL;
    return icaltimezone_get_builtin_timezone(tzid);
}

bool rr_tz_known(const char *tzid)
{
    return tzid && (strcmp(tzid, "UTC") == 0 || s_zone(tzid) != NULL);
}

/* The zone's offset at a Unix time in seconds. */
static int s_offset_at(icaltimezone *zone, int64_t secs)
{
    if (!zone)
        return 0;
    struct icaltimetype t =
        icaltime_from_timet_with_zone((time_t)secs, 0, icaltimezone_get_utc_timezone());
    int dst = 0;
    return icaltimezone_get_utc_offset_of_utc_time(zone, &t, &dst);
}

int rr_offset(const char *tzid, sc_time_t at)
{
    return s_offset_at(s_zone(tzid), at / SC_USEC_PER_SEC);
}

/*
 * Local wall time (seconds as if it were UTC) → Unix seconds. The offsets a day before
 * and after are the candidates; a candidate holds when the zone has that offset at the
 * instant it gives. Two hold: the time occurs twice, take the first. None: it falls in a
 * gap, take the offset before the gap.
 */
static int64_t s_to_utc(icaltimezone *zone, int64_t wall)
{
    if (!zone)
        return wall;
    int before = s_offset_at(zone, wall - S_DAY), after = s_offset_at(zone, wall + S_DAY);
    int64_t a = wall - before, b = wall - after;
    bool a_ok = s_offset_at(zone, a) == before, b_ok = s_offset_at(zone, b) == after;
    if (a_ok && b_ok)
        return a < b ? a : b;
    if (b_ok && !a_ok)
        return b;
    return a;
}

static int64_t s_wall(const struct icaltimetype *t)
{
    return sc_days_from_civil(t->year, (unsigned)t->month, (unsigned)t->day) * S_DAY +
           t->hour * 3600 + t->minute * 60 + t->second;
}

static struct icaltimetype s_floating(int64_t wall)
{
    struct icaltimetype t = icaltime_null_time();
    int64_t days = wall >= 0 ? wall / S_DAY : -((-wall + S_DAY - 1) / S_DAY);
    int64_t rem = wall - days * S_DAY;
    rr_civil(days, &t.year, &t.month, &t.day);
    t.hour = (int)(rem / 3600);
    t.minute = (int)(rem % 3600 / 60);
    t.second = (int)(rem % 60);
    t.is_date = 0;
    return t;
}

static bool s_in_spans(const struct rr_span *spans, size_t n, int64_t day)
{
    for (size_t i = 0; i < n; i++)
        if (day >= spans[i].from && day <= spans[i].to)
            return true;
    return false;
}

static bool s_season_covers(const struct rr_season *s, int64_t day)
{
    if (s_in_spans(s->spans, s->nspans, day))
        return true;
    int y, m, d;
    rr_civil(day, &y, &m, &d);
    for (size_t i = 0; i < s->nspans; i++) {
        int sy, sm, sd;
        rr_civil(s->spans[i].from, &sy, &sm, &sd);
        if (sy == y)
            return false; /* that year has its own dates */
    }
    if (!s->md_from || !s->md_to)
        return false;
    int md = m * 100 + d;
    if (s->md_from <= s->md_to)
        return md >= s->md_from && md <= s->md_to;
    return md >= s->md_from || md <= s->md_to;
}

struct s_vec {
    struct rr_occ *v;
    size_t n, cap;
};

static int s_push(struct s_vec *vec, const struct rr_occ *o)
{
    if (vec->n == vec->cap) {
        size_t cap = vec->cap ? vec->cap * 2 : 16;
        struct rr_occ *v = realloc(vec->v, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        vec->v = v;
        vec->cap = cap;
    }
    vec->v[vec->n++] = *o;
    return 0;
}

/*
 * One rule's occurrences in (after, until] that pass the filter: rule `which` is -1 for the
 * base rule (kept outside replacing seasons), else the index of a season (kept inside it).
 * Iterates in floating local time, so the rule counts days and hours as the school's
 * clock does, and converts each occurrence to UTC itself.
 */
static int s_rule(const struct rr_spec *spec, icaltimezone *zone, int which, sc_time_t after,
                  sc_time_t until, size_t max, struct s_vec *vec, bool *ended)
{
    const char *text = which < 0 ? spec->rrule : spec->seasons[which].rrule;
    struct icalrecurrencetype r = s_parse(text);
    if (r.freq == ICAL_NO_RECURRENCE)
        return -EINVAL;

    /* UNTIL in UTC (or a date) compared in floating local time. */
    if (!icaltime_is_null_time(r.until)) {
        if (r.until.is_date) {
            r.until.is_date = 0;
            r.until.hour = 23;
            r.until.minute = 59;
            r.until.second = 59;
            r.until.zone = NULL;
        } else if (icaltime_is_utc(r.until)) {
            int64_t u = s_wall(&r.until);
            r.until = s_floating(u + s_offset_at(zone, u));
        }
    }

    struct icaltimetype dtstart = icaltime_null_time();
    dtstart.year = spec->year;
    dtstart.month = spec->month;
    dtstart.day = spec->day;
    dtstart.hour = spec->hour;
    dtstart.minute = spec->minute;
    dtstart.second = spec->second;
    dtstart.is_date = 0;

    icalrecur_iterator *it = icalrecur_iterator_new(r, dtstart);
    if (!it)
        return -ENOMEM;
    /*
     * Skip ahead when the rule allows: libical's set_start is wrong for HOURLY rules with an
     * INTERVAL that does not divide a day, and cannot honour COUNT; those iterate from DTSTART.
     */
    int64_t after_s = after / SC_USEC_PER_SEC, until_s = until / SC_USEC_PER_SEC;
    int64_t start_wall = after_s + s_offset_at(zone, after_s) - 2 * S_DAY;
    if (r.count == 0 && r.freq != ICAL_HOURLY_RECURRENCE && start_wall > s_wall(&dtstart))
        icalrecur_iterator_set_start(it, s_floating(start_wall));

    size_t kept = 0;
    int rc = 0;
    *ended = false;
    for (long step = 0; step < S_MAX_STEPS; step++) {
        struct icaltimetype o = icalrecur_iterator_next(it);
        if (icaltime_is_null_time(o)) {
            *ended = true;
            break;
        }
        int64_t wall = s_wall(&o), at = s_to_utc(zone, wall);
        /* Instants move back by at most the size of a DST shift: stop well past until. */
        if (at > until_s + 3 * 3600)
            break;
        if (at <= after_s || at > until_s)
            continue;
        int64_t day = sc_days_from_civil(o.year, (unsigned)o.month, (unsigned)o.day);
        if (s_in_spans(spec->closed, spec->nclosed, day))
            continue;
        bool keep;
        if (which >= 0) {
            keep = s_season_covers(&spec->seasons[which], day);
        } else {
            keep = true;
            for (size_t i = 0; i < spec->nseasons && keep; i++)
                if (spec->seasons[i].replace && s_season_covers(&spec->seasons[i], day))
                    keep = false;
        }
        if (!keep)
            continue;
        /* Two local times can name one instant (both sides of a DST gap): keep the first. */
        bool seen = false;
        for (size_t k = vec->n; k > 0 && vec->v[k - 1].source == which; k--) {
            if (vec->v[k - 1].at / SC_USEC_PER_SEC < at - 3 * 3600)
                break;
            seen |= vec->v[k - 1].at == at * SC_USEC_PER_SEC;
        }
        if (seen)
            continue;
        struct rr_occ occ = {
            .at = at * SC_USEC_PER_SEC,
            .local_day = day,
            .hour = o.hour,
            .minute = o.minute,
            .second = o.second,
            .offset = s_offset_at(zone, at),
            .source = which,
        };
        if ((rc = s_push(vec, &occ)) < 0)
            break;
        if (++kept >= max)
            break;
    }
    icalrecur_iterator_free(it);
    return rc;
}

static int s_cmp_occ(const void *a, const void *b)
{
    const struct rr_occ *x = a, *y = b;
    if (x->at != y->at)
        return x->at < y->at ? -1 : 1;
    return x->source < y->source ? -1 : x->source > y->source;
}

int rr_expand(const struct rr_spec *spec, sc_time_t after, sc_time_t until, size_t max,
              struct rr_occ **out, size_t *n, bool *exhausted)
{
    struct s_vec vec = {0};
    icaltimezone *zone = s_zone(spec->tzid);
    bool all_ended = true;
    int rc = 0;

    *out = NULL;
    *n = 0;
    if (max == 0 || until <= after)
        goto done;
    for (int which = -1; which < (int)spec->nseasons; which++) {
        bool ended = false;
        if ((rc = s_rule(spec, zone, which, after, until, max, &vec, &ended)) < 0)
            goto fail;
        all_ended &= ended;
    }
    /* Equal instants: the base rule's entry (source -1) first, and only it is kept. */
    if (vec.n > 1)
        qsort(vec.v, vec.n, sizeof *vec.v, s_cmp_occ);
    if (vec.n > 1) {
        size_t w = 1;
        for (size_t i = 1; i < vec.n; i++)
            if (vec.v[i].at != vec.v[w - 1].at)
                vec.v[w++] = vec.v[i];
        vec.n = w;
    }
    if (vec.n > max)
        vec.n = max;
    *out = vec.v;
    *n = vec.n;
    vec.v = NULL;
done:
    if (exhausted)
        *exhausted = all_ended;
    return 0;
fail:
    free(vec.v);
    return rc;
}

char *rr_format_local(sc_time_t at, int offset, char *buf, size_t len)
{
    int64_t secs = at / SC_USEC_PER_SEC + offset;
    struct icaltimetype t = s_floating(secs);
    int off = offset < 0 ? -offset : offset;
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d%c%02d:%02d", t.year, t.month, t.day, t.hour,
             t.minute, t.second, offset < 0 ? '-' : '+', off / 3600, off % 3600 / 60);
    return buf;
}
