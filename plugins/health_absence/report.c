/* health_absence: a school's day, the district roll-up, the daily reports and their EARS run. */
#include "health_absence.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A finite number as JSON; infinities (possible only with ears_min_sigma 0) as null. */
static json_t *s_num(double x)
{
    return isfinite(x) ? json_real(x) : json_null();
}

static void s_bump(json_t *obj, const char *key)
{
    json_object_set_new(obj, key, json_integer(sc_json_int(obj, key, 0) + 1));
}

/* The by_class entry for klass in arr, added when missing (borrowed). */
static json_t *s_class_entry(json_t *arr, const char *klass)
{
    size_t i;
    json_t *e;
    json_array_foreach(arr, i, e) if (strcmp(sc_json_str(e, "class"), klass) == 0) return e;
    e = json_pack("{s:s, s:n, s:i, s:i, s:{}, s:n}", "class", klass, "grade", "absences", 0,
                  "illness", 0, "syndromes", "morning_check");
    json_array_append_new(arr, e);
    return e;
}

/*
 * Everything about one school's day: the absences (who, why, traced or not),
 * counts by reason, class and syndrome, the morning checks, the clusters open
 * that day and the EARS results. New reference, or NULL with *rc set.
 */
json_t *ha_school_day(sc_ctx_t *ctx, const char *school, const char *date, int *rc)
{
    char tz[HA_TZ_MAX];
    PGresult *res = NULL;
    json_t *out = NULL, *by_class = json_array(), *absent = json_array(), *untraced = json_array(),
           *cases = json_array(), *by_syndrome = json_object();
    ha_school_tz(ctx, school, tz);
    const char *p[] = {school, date, tz};
    res = ha_exec(ctx,
                  "SELECT coalesce(student, '(anonymised)'), class, grade, reason,"
                  " array_to_json(symptoms), array_to_json(syndromes), syndrome, diagnosis,"
                  " disease, seen_doctor, health.ymd(onset), health.rfc3339(traced_at), traced_by,"
                  " health.rfc3339(trace_due), untraced_at IS NOT NULL"
                  " FROM health.absences WHERE school = $1 AND date = $2::date"
                  " ORDER BY class, student",
                  2, p, rc);
    if (!res)
        goto fail;
    int n = PQntuples(res), illness = 0, personal = 0, unknown = 0, traced = 0;
    for (int i = 0; i < n; i++) {
        const char *student = PQgetvalue(res, i, 0), *klass = PQgetvalue(res, i, 1);
        const char *reason = PQgetvalue(res, i, 3);
        json_t *syn = sc_pq_value(res, i, 5);
        json_t *row =
            json_pack("{s:s, s:s, s:o, s:s, s:o, s:O, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:b}",
                      "student", student, "class", klass, "grade", sc_pq_value(res, i, 2), "reason",
                      reason, "symptoms", sc_pq_value(res, i, 4), "syndromes", syn, "syndrome",
                      sc_pq_value(res, i, 6), "diagnosis", sc_pq_value(res, i, 7), "disease",
                      sc_pq_value(res, i, 8), "seen_doctor", sc_pq_value(res, i, 9), "onset",
                      sc_pq_value(res, i, 10), "traced_at", sc_pq_value(res, i, 11), "traced_by",
                      sc_pq_value(res, i, 12), "trace_due", sc_pq_value(res, i, 13), "untraced",
                      PQgetvalue(res, i, 14)[0] == 't');
        json_array_append_new(absent, row);
        illness += strcmp(reason, "illness") == 0;
        personal += strcmp(reason, "personal") == 0;
        unknown += strcmp(reason, "unknown") == 0;
        traced += !PQgetisnull(res, i, 11);
        json_t *ce = s_class_entry(by_class, klass);
        if (!PQgetisnull(res, i, 2))
            json_object_set_new(ce, "grade", json_string(PQgetvalue(res, i, 2)));
        s_bump(ce, "absences");
        if (strcmp(reason, "illness") == 0)
            s_bump(ce, "illness");
        size_t k;
        const json_t *s;
        json_array_foreach(syn, k, s)
        {
            s_bump(json_object_get(ce, "syndromes"), json_string_value(s));
            s_bump(by_syndrome, json_string_value(s));
        }
        json_decref(syn);
        if (!PQgetisnull(res, i, 13) && PQgetisnull(res, i, 11))
            json_array_append_new(untraced, json_pack("{s:s, s:s, s:s, s:o, s:b}", "student",
                                                      student, "class", klass, "reason", reason,
                                                      "trace_due", sc_pq_value(res, i, 13),
                                                      "overdue", PQgetvalue(res, i, 14)[0] == 't'));
        if (!PQgetisnull(res, i, 8))
            json_array_append_new(cases, json_pack("{s:s, s:s, s:s}", "student", student, "class",
                                                   klass, "disease", PQgetvalue(res, i, 8)));
    }
    PQclear(res);

    res = ha_exec(ctx,
                  "SELECT class, present, absent, symptomatic FROM health.morning_checks"
                  " WHERE school = $1 AND date = $2::date ORDER BY class",
                  2, p, rc);
    if (!res)
        goto fail;
    long present = 0, absent_n = 0, symptomatic = 0;
    for (int i = 0; i < PQntuples(res); i++) {
        json_t *ce = s_class_entry(by_class, PQgetvalue(res, i, 0));
        json_object_set_new(ce, "morning_check",
                            json_pack("{s:o, s:o, s:o}", "present", sc_pq_value(res, i, 1),
                                      "absent", sc_pq_value(res, i, 2), "symptomatic",
                                      sc_pq_value(res, i, 3)));
        present += atol(PQgetvalue(res, i, 1));
        absent_n += atol(PQgetvalue(res, i, 2));
        symptomatic += atol(PQgetvalue(res, i, 3));
    }
    int checked = PQntuples(res);
    PQclear(res);

    /* Clusters of the school that were open on that day. */
    res = ha_exec(ctx,
                  "SELECT id AS cluster, scope, scope_key, rule, syndrome, disease, cases,"
                  " window_days, health.ymd(first_date) AS first_date,"
                  " health.ymd(last_date) AS last_date, alerted, closed_at IS NULL AS open"
                  " FROM health.clusters WHERE school = $1 AND first_date <= $2::date"
                  " AND (closed_at IS NULL OR (closed_at AT TIME ZONE $3)::date > $2::date)"
                  " ORDER BY id",
                  3, p, rc);
    if (!res)
        goto fail;
    json_t *clusters = sc_pq_rows(res);
    PQclear(res);

    res = ha_exec(ctx,
                  "SELECT measure, algorithm, observed, expected, upper, statistic, alarm"
                  " FROM health.ears WHERE school = $1 AND date = $2::date"
                  " ORDER BY measure, algorithm",
                  2, p, rc);
    if (!res) {
        json_decref(clusters);
        goto fail;
    }
    json_t *ears = sc_pq_rows(res);
    PQclear(res);
    res = NULL;

    out = json_pack("{s:s, s:s, s:i, s:{s:i, s:i, s:i}, s:i, s:o, s:o, s:o, s:o, s:o, s:o, s:o,"
                    " s:{s:i, s:I, s:I, s:I, s:I}}",
                    "school", school, "date", date, "absences", n, "by_reason", "illness", illness,
                    "personal", personal, "unknown", unknown, "traced", traced, "by_class",
                    by_class, "by_syndrome", by_syndrome, "untraced", untraced, "suspected_cases",
                    cases, "clusters", clusters, "ears", ears, "absent", absent, "morning_checks",
                    "classes", checked, "present", (json_int_t)present, "absent",
                    (json_int_t)absent_n, "symptomatic", (json_int_t)symptomatic, "unregistered",
                    (json_int_t)(absent_n > n ? absent_n - n : 0));
    if (!out)
        *rc = -ENOMEM;
    return out;
fail:
    PQclear(res);
    json_decref(by_class);
    json_decref(absent);
    json_decref(untraced);
    json_decref(cases);
    json_decref(by_syndrome);
    return NULL;
}

json_t *ha_district_day(sc_ctx_t *ctx, const char *district, const char *date, int *rc)
{
    /* The district's schools from the directory and from our own records. */
    json_t *schools = ctx->host->district_schools(ctx, district);
    json_t *codes = json_array();
    size_t i;
    const json_t *s;
    json_array_foreach(schools, i, s) if (sc_json_str(s, "school"))
        json_array_append_new(codes, json_string(sc_json_str(s, "school")));
    json_decref(schools);
    char *codes_text = json_dumps(codes, JSON_COMPACT);
    json_decref(codes);
    const char *p[] = {district, date, codes_text};
    PGresult *res = ha_exec(
        ctx,
        "WITH s AS (SELECT json_array_elements_text($3::json) AS school"
        "           UNION SELECT school FROM health.schools WHERE district = $1)"
        " SELECT s.school,"
        "  (SELECT count(*) FROM health.absences a WHERE a.school = s.school"
        "     AND a.date = $2::date),"
        "  (SELECT count(*) FROM health.absences a WHERE a.school = s.school AND a.date = $2::date"
        "     AND a.reason = 'illness'),"
        "  (SELECT count(*) FROM health.absences a WHERE a.school = s.school AND a.date = $2::date"
        "     AND a.trace_due IS NOT NULL AND a.traced_at IS NULL),"
        "  (SELECT count(*) FROM health.absences a WHERE a.school = s.school AND a.date = $2::date"
        "     AND a.disease IS NOT NULL),"
        "  (SELECT count(*) FROM health.clusters c WHERE c.school = s.school"
        "     AND c.first_date <= $2::date AND (c.closed_at IS NULL"
        "       OR (c.closed_at AT TIME ZONE coalesce((SELECT timezone FROM health.schools h"
        "                                               WHERE h.school = s.school), 'UTC'))::date"
        "          > $2::date)),"
        "  (SELECT count(*) FROM health.morning_checks m WHERE m.school = s.school"
        "     AND m.date = $2::date),"
        "  (SELECT coalesce(sum(present), 0) FROM health.morning_checks m"
        "     WHERE m.school = s.school AND m.date = $2::date),"
        "  (SELECT coalesce(sum(absent), 0) FROM health.morning_checks m"
        "     WHERE m.school = s.school AND m.date = $2::date)"
        " FROM s ORDER BY s.school",
        3, p, rc);
    free(codes_text);
    if (!res)
        return NULL;
    json_t *rows = json_array();
    json_int_t tot[8] = {0};
    static const char *const keys[] = {"absences",        "illness",       "untraced",
                                       "suspected_cases", "open_clusters", "classes_checked",
                                       "present",         "absent"};
    for (int r = 0; r < PQntuples(res); r++) {
        json_t *row = json_pack("{s:s}", "school", PQgetvalue(res, r, 0));
        for (int k = 0; k < 8; k++) {
            json_int_t v = strtoll(PQgetvalue(res, r, k + 1), NULL, 10);
            tot[k] += v;
            json_object_set_new(row, keys[k], json_integer(v));
        }
        json_object_set_new(row, "checked", json_boolean(strcmp(PQgetvalue(res, r, 6), "0") != 0));
        json_array_append_new(rows, row);
    }
    PQclear(res);
    json_t *totals = json_object();
    for (int k = 0; k < 8; k++)
        json_object_set_new(totals, keys[k], json_integer(tot[k]));
    json_t *out = json_pack("{s:s, s:s, s:o, s:o}", "district", district, "date", date, "schools",
                            rows, "totals", totals);
    if (!out)
        *rc = -ENOMEM;
    return out;
}

/*
 * The EARS series for one school and day: the last `want` school days up to
 * and including `date`, none before the school's history starts, oldest
 * first, with the illness-absence count and the enrolment (present + absent
 * over the day's morning checks; 0 when none).
 */
static int s_series(sc_ctx_t *ctx, struct ha_state *st, const char *school, const char *date,
                    size_t want, double *count, double *enrol, size_t *n)
{
    char wants[24], span[24];
    snprintf(wants, sizeof wants, "%zu", want);
    snprintf(span, sizeof span, "%d", (int)(want * 7 / (size_t)st->n_school_days) + 14);
    const char *p[] = {school, date, st->school_days, wants, span};
    int rc;
    PGresult *res = ha_exec(
        ctx,
        "WITH days AS (SELECT g::date AS day FROM generate_series(($2::date - $5::int)::timestamp,"
        "                  $2::date::timestamp, interval '1 day') g,"
        "                health.schools s"
        "              WHERE s.school = $1 AND g::date >= s.history_from"
        "                AND extract(isodow FROM g)::int = ANY ($3::int[])"
        "              ORDER BY g DESC LIMIT $4::int)"
        " SELECT (SELECT count(*) FROM health.absences a WHERE a.school = $1 AND a.date = day"
        "           AND a.reason = 'illness'),"
        "        (SELECT coalesce(sum(present + absent), 0) FROM health.morning_checks m"
        "           WHERE m.school = $1 AND m.date = day)"
        " FROM days ORDER BY day",
        5, p, &rc);
    if (!res)
        return rc;
    *n = (size_t)PQntuples(res);
    for (size_t i = 0; i < *n; i++) {
        count[i] = strtod(PQgetvalue(res, (int)i, 0), NULL);
        enrol[i] = strtod(PQgetvalue(res, (int)i, 1), NULL);
    }
    PQclear(res);
    return 0;
}

/* Stores one result and raises health.aberration when it alarms. */
static int s_ears_result(sc_ctx_t *ctx, const char *school, const char *district, const char *date,
                         const char *measure, enum ha_ears_alg alg, int baseline,
                         const struct ha_ears_result *r, sc_time_t at)
{
    char v[5][32];
    double xs[5] = {r->observed, r->expected, r->sd, r->statistic, r->upper};
    for (int i = 0; i < 5; i++)
        snprintf(v[i], sizeof v[i], "%.17g", xs[i]);
    for (int i = 0; i < 5; i++)
        if (isinf(xs[i]))
            snprintf(v[i], sizeof v[i], "%sInfinity", xs[i] < 0 ? "-" : "");
    const char *p[] = {school, date, measure, ha_ears_names[alg],         v[0], v[1],
                       v[2],   v[3], v[4],    r->alarm ? "true" : "false"};
    int rc;
    PGresult *res =
        ha_exec(ctx,
                "INSERT INTO health.ears (school, date, measure, algorithm, observed, expected, sd,"
                " statistic, upper, alarm) VALUES ($1, $2::date, $3, $4, $5::float8, $6::float8,"
                " $7::float8, $8::float8, $9::float8, $10::boolean)"
                " ON CONFLICT (school, date, measure, algorithm) DO UPDATE"
                " SET observed = EXCLUDED.observed,"
                " expected = EXCLUDED.expected, sd = EXCLUDED.sd, statistic = EXCLUDED.statistic,"
                " upper = EXCLUDED.upper, alarm = EXCLUDED.alarm",
                10, p, &rc);
    if (!res)
        return rc;
    PQclear(res);
    if (!r->alarm)
        return 0;
    char id[160];
    snprintf(id, sizeof id, "aberration:%s:%s:%s:%s", school, date, measure, ha_ears_names[alg]);
    json_t *data =
        json_pack("{s:s, s:o, s:o, s:s, s:s, s:o, s:o, s:o, s:i}", "date", date, "observed",
                  s_num(r->observed), "expected", s_num(r->expected), "algorithm",
                  ha_ears_names[alg], "measure", measure, "upper", s_num(r->upper), "statistic",
                  s_num(r->statistic), "sd", s_num(r->sd), "baseline", baseline);
    return ha_emit(ctx, "health.aberration", school, district, id, at, data);
}

int ha_ears_day(sc_ctx_t *ctx, struct ha_state *st, const char *school, const char *district,
                const char *date, sc_time_t at)
{
    size_t want = 0, n = 0;
    for (int a = 0; a < HA_EARS_N; a++)
        if (st->ears_on[a] && ha_ears_needed(a, st->ears_baseline) > want)
            want = ha_ears_needed(a, st->ears_baseline);
    if (want == 0)
        return 0;
    double *count = calloc(want, sizeof *count), *enrol = calloc(want, sizeof *enrol),
           *rate = calloc(want, sizeof *rate);
    int rc = -ENOMEM;
    if (!count || !enrol || !rate)
        goto out;
    if ((rc = s_series(ctx, st, school, date, want, count, enrol, &n)) < 0)
        goto out;
    /* Reports fall on school days only, so the series ends on the day assessed. Each
     * algorithm takes the tail it needs; a school without that much history is skipped. */
    for (int a = 0; a < HA_EARS_N && rc == 0; a++) {
        size_t need = ha_ears_needed(a, st->ears_baseline);
        if (!st->ears_on[a] || n < need)
            continue;
        struct ha_ears_result r;
        const double *c = count + (n - need);
        rc = ha_ears(a, c, need, st->ears_baseline, st->ears_z[a], st->ears_min_sigma, &r);
        if (rc == 0)
            rc = s_ears_result(ctx, school, district, date, "count", a, st->ears_baseline, &r, at);
        if (rc < 0 || !st->ears_rate)
            continue;
        const double *e = enrol + (n - need);
        bool known = true;
        for (size_t i = 0; i < need; i++) {
            known = known && e[i] > 0;
            rate[i] = known ? c[i] / e[i] : 0;
        }
        if (!known)
            continue;
        rc = ha_ears(a, rate, need, st->ears_baseline, st->ears_z[a],
                     st->ears_min_sigma / e[need - 1], &r);
        if (rc == 0)
            rc = s_ears_result(ctx, school, district, date, "rate", a, st->ears_baseline, &r, at);
    }
out:
    free(count);
    free(enrol);
    free(rate);
    return rc;
}

/* The daily report of one school for `date`, raised at `at`. */
static int s_school_report(sc_ctx_t *ctx, struct ha_state *st, const char *school,
                           const char *district, const char *date, sc_time_t at)
{
    int rc = ha_ears_day(ctx, st, school, district, date, at);
    if (rc < 0)
        return rc;
    json_t *day = ha_school_day(ctx, school, date, &rc);
    if (!day)
        return rc;
    /* The report names only the pupils someone must act on; the full list is a query away. */
    json_object_del(day, "absent");
    char id[128];
    snprintf(id, sizeof id, "report:%s:%s", school, date);
    return ha_emit(ctx, "health.report.daily", school, district, id, at, day);
}

/*
 * Sends every daily report and district roll-up due by now, oldest first,
 * each dated the local day of its instant, and schedules the next school day.
 * A clock that jumped days sends each missed day's report in turn.
 */
int ha_reports_due(sc_ctx_t *ctx, struct ha_state *st, sc_time_t now)
{
    char when[SC_TIME_LEN], date[11], next_day[11];
    const char *p[] = {sc_time_format(now, when)};
    int rc;
    PGresult *res = ha_exec(ctx,
                            "SELECT school, district, timezone, next_report_at FROM health.schools"
                            " WHERE next_report_at <= $1::timestamptz"
                            " ORDER BY next_report_at, school FOR UPDATE",
                            1, p, &rc);
    if (!res)
        return rc;
    for (int i = 0; i < PQntuples(res) && rc == 0; i++) {
        const char *school = PQgetvalue(res, i, 0), *tz = PQgetvalue(res, i, 2);
        const char *district = PQgetisnull(res, i, 1) ? NULL : PQgetvalue(res, i, 1);
        sc_time_t at = sc_pq_time(res, i, 3, now);
        for (int guard = 0; at <= now && guard < 400 && rc == 0; guard++) {
            if ((rc = ha_local_date(ctx, at, tz, date)) < 0 ||
                (rc = s_school_report(ctx, st, school, district, date, at)) < 0)
                break;
            int64_t days;
            sc_date_parse(date, &days);
            sc_date_format(days + 1, next_day);
            sc_time_t next;
            if ((rc = ha_next_local(ctx, next_day, st->report_time, tz, st->school_days, at,
                                    &next)) < 0)
                break;
            char next_s[SC_TIME_LEN];
            const char *pu[] = {school, sc_time_format(next, next_s), date};
            PGresult *u = ha_exec(ctx,
                                  "UPDATE health.schools SET next_report_at = $2::timestamptz,"
                                  " last_report = $3::date WHERE school = $1",
                                  3, pu, &rc);
            if (!u)
                break;
            PQclear(u);
            at = next;
        }
    }
    PQclear(res);
    if (rc < 0)
        return rc;

    res = ha_exec(ctx,
                  "SELECT district, timezone, next_report_at FROM health.districts"
                  " WHERE next_report_at <= $1::timestamptz ORDER BY next_report_at, district"
                  " FOR UPDATE",
                  1, p, &rc);
    if (!res)
        return rc;
    for (int i = 0; i < PQntuples(res) && rc == 0; i++) {
        const char *district = PQgetvalue(res, i, 0), *tz = PQgetvalue(res, i, 1);
        sc_time_t at = sc_pq_time(res, i, 2, now);
        for (int guard = 0; at <= now && guard < 400 && rc == 0; guard++) {
            if ((rc = ha_local_date(ctx, at, tz, date)) < 0)
                break;
            json_t *day = ha_district_day(ctx, district, date, &rc);
            if (!day)
                break;
            char id[128];
            snprintf(id, sizeof id, "district-report:%s:%s", district, date);
            if ((rc = ha_emit(ctx, "health.report.district", NULL, district, id, at, day)) < 0)
                break;
            int64_t days;
            sc_date_parse(date, &days);
            sc_date_format(days + 1, next_day);
            sc_time_t next;
            if ((rc = ha_next_local(ctx, next_day, st->report_time, tz, st->school_days, at,
                                    &next)) < 0)
                break;
            char next_s[SC_TIME_LEN];
            const char *pu[] = {district, sc_time_format(next, next_s)};
            PGresult *u = ha_exec(ctx,
                                  "UPDATE health.districts SET next_report_at = $2::timestamptz"
                                  " WHERE district = $1",
                                  2, pu, &rc);
            if (!u)
                break;
            PQclear(u);
            at = next;
        }
    }
    PQclear(res);
    return rc;
}
