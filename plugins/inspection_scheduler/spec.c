/* inspection_scheduler: a schedule row turned into an expansion (seasons, closed days, zone). */
#include "insp.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void insp_school(sc_ctx_t *ctx, const char *school, struct insp_school *out)
{
    json_t *s = school ? ctx->host->school(ctx, school) : NULL;
    const char *tz = sc_json_str(s, "timezone");
    const char *district = sc_json_str(s, "district");
    if (!tz || !*tz)
        tz = ctx->host->default_timezone(ctx);
    if (!tz || !rr_tz_known(tz)) {
        SC_LOG_WARN(ctx, "time zone \"%s\" of school %s is unknown to libical: using UTC",
                    tz ? tz : "", school ? school : "-");
        tz = "UTC";
    }
    snprintf(out->tz, sizeof out->tz, "%s", tz);
    snprintf(out->district, sizeof out->district, "%s", district ? district : "");
    json_decref(s);
}

int64_t insp_local_day(const char *tz, sc_time_t at)
{
    int64_t secs = at / SC_USEC_PER_SEC + rr_offset(tz, at);
    return secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400);
}

int insp_parse_range(const char *from, const char *to, int *md_from, int *md_to,
                     struct rr_span *span, bool *span_ok)
{
    *span_ok = false;
    *md_from = *md_to = 0;
    if (!from || !to)
        return -EINVAL;
    if (rr_parse_md(from, md_from) == 0 && rr_parse_md(to, md_to) == 0)
        return 0;
    *md_from = *md_to = 0;
    if (sc_date_parse(from, &span->from) < 0 || sc_date_parse(to, &span->to) < 0 ||
        span->to < span->from || span->to - span->from > 366)
        return -EINVAL;
    *span_ok = true;
    return 0;
}

/* Adds the ranges of one source of season dates: a generic range only if none was found yet. */
static int s_add_range(const char *from, const char *to, bool *have_md, int *md_from, int *md_to,
                       struct rr_span **spans, size_t *n)
{
    int f, t;
    struct rr_span span;
    bool span_ok;
    if (insp_parse_range(from, to, &f, &t, &span, &span_ok) < 0)
        return 0; /* config was checked in init and events by their validator */
    if (!span_ok) {
        if (!*have_md) {
            *md_from = f;
            *md_to = t;
            *have_md = true;
        }
        return 0;
    }
    /* A later source does not override a year an earlier one set. */
    int y, m, d;
    rr_civil(span.from, &y, &m, &d);
    for (size_t i = 0; i < *n; i++) {
        int y2;
        rr_civil((*spans)[i].from, &y2, &m, &d);
        if (y2 == y)
            return 0;
    }
    struct rr_span *v = realloc(*spans, (*n + 1) * sizeof *v);
    if (!v)
        return -ENOMEM;
    v[(*n)++] = span;
    *spans = v;
    return 0;
}

/*
 * Sources, strongest first: dates the district set by event, the district's entry in
 * config (district_seasons), the plugin's seasons in config.
 */
int insp_season_resolve(sc_ctx_t *ctx, const struct insp *st, const char *district,
                        const char *name, int *md_from, int *md_to, struct rr_span **spans,
                        size_t *nspans)
{
    bool have_md = false, found = false;
    int rc = 0;
    PGresult *res = NULL;

    *md_from = *md_to = 0;
    *spans = NULL;
    *nspans = 0;
    if (district && *district) {
        const char *p[2] = {district, name};
        res = sc_pq_exec(sc_db(ctx),
                         "SELECT date_from, date_to FROM inspection.seasons"
                         " WHERE district = $1 AND season = $2 ORDER BY year DESC",
                         2, p, &rc);
        if (!res)
            goto fail;
        for (int i = 0; i < PQntuples(res); i++) {
            found = true;
            if ((rc = s_add_range(PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), &have_md, md_from,
                                  md_to, spans, nspans)) < 0)
                goto fail;
        }
        size_t i;
        const json_t *e;
        json_array_foreach(st->district_seasons, i, e)
        {
            const char *d = sc_json_str(e, "district"), *s = sc_json_str(e, "season");
            if (!d || !s || strcmp(d, district) != 0 || strcmp(s, name) != 0)
                continue;
            found = true;
            if ((rc = s_add_range(sc_json_str(e, "from"), sc_json_str(e, "to"), &have_md, md_from,
                                  md_to, spans, nspans)) < 0)
                goto fail;
        }
    }
    size_t i;
    const json_t *e;
    json_array_foreach(st->seasons, i, e)
    {
        const char *s = sc_json_str(e, "season");
        if (!s || strcmp(s, name) != 0)
            continue;
        found = true;
        if ((rc = s_add_range(sc_json_str(e, "from"), sc_json_str(e, "to"), &have_md, md_from,
                              md_to, spans, nspans)) < 0)
            goto fail;
    }
    PQclear(res);
    return found ? 0 : -ENOENT;
fail:
    PQclear(res);
    free(*spans);
    *spans = NULL;
    *nspans = 0;
    return rc;
}

static int s_add_closed(struct insp_spec *spec, int64_t from, int64_t to)
{
    struct rr_span *v = realloc(spec->closed, (spec->rr.nclosed + 1) * sizeof *v);
    if (!v)
        return -ENOMEM;
    v[spec->rr.nclosed++] = (struct rr_span){from, to};
    spec->closed = v;
    spec->rr.closed = v;
    return 0;
}

int insp_spec_load(sc_ctx_t *ctx, const struct insp *st, const json_t *sched,
                   const struct insp_school *info, struct insp_spec *spec, char *err, size_t errlen)
{
    PGresult *res = NULL;
    int rc = -EINVAL;
    const json_t *seasons = json_object_get(sched, "seasons");
    const char *dtstart = sc_json_str(sched, "dtstart");

    memset(spec, 0, sizeof *spec);
    spec->hold = json_pack("{s:O, s:s}", "sched", sched, "tz", info->tz);
    if (!spec->hold)
        return -ENOMEM;
    spec->rr.tzid = sc_json_str(spec->hold, "tz");
    spec->rr.rrule = sc_json_str(sched, "rrule");
    if (!dtstart ||
        sscanf(dtstart, "%d-%d-%dT%d:%d:%d", &spec->rr.year, &spec->rr.month, &spec->rr.day,
               &spec->rr.hour, &spec->rr.minute, &spec->rr.second) != 6) {
        snprintf(err, errlen, "dtstart \"%s\" is not a local date-time", dtstart ? dtstart : "");
        goto fail;
    }

    size_t ns = json_array_size(seasons);
    if (ns) {
        rc = -ENOMEM;
        if (!(spec->seasons = calloc(ns, sizeof *spec->seasons)))
            goto fail;
    }
    spec->rr.seasons = spec->seasons;
    for (size_t i = 0; i < ns; i++) {
        const json_t *s = json_array_get(seasons, i);
        struct rr_season *out = &spec->seasons[i];
        const char *name = sc_json_str(s, "season"), *mode = sc_json_str(s, "mode");
        out->rrule = sc_json_str(s, "rrule");
        out->replace = !mode || strcmp(mode, "add") != 0;
        spec->rr.nseasons = i + 1;
        if (name) {
            struct rr_span *spans = NULL;
            size_t nspans = 0;
            rc = insp_season_resolve(ctx, st, info->district, name, &out->md_from, &out->md_to,
                                     &spans, &nspans);
            if (rc == -ENOENT)
                snprintf(err, errlen, "seasons[%zu].season: unknown season \"%s\"", i, name);
            if (rc < 0)
                goto fail;
            out->spans = spans;
            out->nspans = nspans;
        } else {
            struct rr_span span;
            bool span_ok;
            if (insp_parse_range(sc_json_str(s, "from"), sc_json_str(s, "to"), &out->md_from,
                                 &out->md_to, &span, &span_ok) < 0) {
                snprintf(err, errlen, "seasons[%zu]: from/to are not dates", i);
                rc = -EINVAL;
                goto fail;
            }
            if (span_ok) {
                struct rr_span *one = malloc(sizeof *one);
                rc = -ENOMEM;
                if (!one)
                    goto fail;
                *one = span;
                out->spans = one;
                out->nspans = 1;
            }
        }
    }

    size_t i;
    const json_t *d;
    json_array_foreach(json_object_get(sched, "exdates"), i, d)
    {
        int64_t day;
        if (json_is_string(d) && sc_date_parse(json_string_value(d), &day) == 0 &&
            (rc = s_add_closed(spec, day, day)) < 0)
            goto fail;
    }
    if (sc_json_bool(sched, "skip_closed", true)) {
        const char *p[2] = {sc_json_str(sched, "school"), info->district};
        res = sc_pq_exec(sc_db(ctx),
                         "SELECT date_from - DATE '1970-01-01', date_to - DATE '1970-01-01'"
                         "  FROM inspection.closed_days"
                         " WHERE (scope = $1 AND NOT is_district)"
                         "    OR (scope = $2 AND is_district)",
                         2, p, &rc);
        if (!res)
            goto fail;
        for (int r = 0; r < PQntuples(res); r++)
            if ((rc = s_add_closed(spec, strtoll(PQgetvalue(res, r, 0), NULL, 10),
                                   strtoll(PQgetvalue(res, r, 1), NULL, 10))) < 0)
                goto fail;
    }
    PQclear(res);
    return 0;
fail:
    PQclear(res);
    insp_spec_free(spec);
    return rc;
}

void insp_spec_free(struct insp_spec *spec)
{
    for (size_t i = 0; spec->seasons && i < spec->rr.nseasons; i++)
        free((void *)spec->seasons[i].spans);
    free(spec->seasons);
    free(spec->closed);
    json_decref(spec->hold);
    memset(spec, 0, sizeof *spec);
}
