/* health_absence: queries — a school's day, a class's fortnight, clusters, district, ledger. */
#include "health_absence.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_LEDGER_LIMIT 1000
#define S_LEDGER_LIMIT_MAX 10000

static int s_bad(json_t **reply, const char *fmt, const char *arg)
{
    char msg[300];
    snprintf(msg, sizeof msg, fmt, arg);
    *reply = json_pack("{s:s}", "error", msg);
    return -EINVAL;
}

/* A date member, or today's local date in tz when absent. 0, or -EINVAL with *reply set. */
static int s_date_arg(sc_ctx_t *ctx, const json_t *req, const char *key, const char *tz, char *out,
                      json_t **reply)
{
    char detail[200];
    if (sc_check_date(req, "", key, false, detail, sizeof detail) < 0)
        return s_bad(reply, "%s", detail);
    const char *d = sc_json_str(req, key);
    if (d) {
        snprintf(out, 11, "%s", d);
        return 0;
    }
    int rc = ha_local_date(ctx, sc_now(ctx), tz, out);
    if (rc < 0)
        *reply = json_pack("{s:s}", "error", "database error");
    return rc;
}

static int s_code_arg(const json_t *req, const char *key, json_t **reply)
{
    char detail[200];
    if (sc_check_code(req, "", key, true, detail, sizeof detail) < 0)
        return s_bad(reply, "%s", detail);
    return 0;
}

static int s_db_error(json_t **reply, int rc)
{
    *reply = json_pack("{s:s}", "error", "database error");
    return rc < 0 ? rc : -EIO;
}

static int s_day(sc_ctx_t *ctx, const json_t *req, json_t **reply)
{
    char tz[HA_TZ_MAX], date[11];
    int rc;
    if ((rc = s_code_arg(req, "school", reply)) < 0)
        return rc;
    const char *school = sc_json_str(req, "school");
    ha_school_tz(ctx, school, tz);
    if ((rc = s_date_arg(ctx, req, "date", tz, date, reply)) < 0)
        return rc;
    *reply = ha_school_day(ctx, school, date, &rc);
    return *reply ? 0 : s_db_error(reply, rc);
}

/* A class's last `days` days (default 14) up to `to` (default today), day by day. */
static int s_class(sc_ctx_t *ctx, const json_t *req, json_t **reply)
{
    char tz[HA_TZ_MAX], to[11], ndays[16], detail[200];
    int rc;
    if ((rc = s_code_arg(req, "school", reply)) < 0 || (rc = s_code_arg(req, "class", reply)) < 0)
        return rc;
    if (sc_check_int(req, "", "days", false, 1, 366, detail, sizeof detail) < 0)
        return s_bad(reply, "%s", detail);
    const char *school = sc_json_str(req, "school"), *klass = sc_json_str(req, "class");
    ha_school_tz(ctx, school, tz);
    if ((rc = s_date_arg(ctx, req, "to", tz, to, reply)) < 0)
        return rc;
    snprintf(ndays, sizeof ndays, "%d", (int)sc_json_int(req, "days", 14));
    const char *p[] = {school, klass, to, ndays};
    PGresult *res =
        ha_exec(ctx,
                "SELECT health.ymd(g::date),"
                " (SELECT json_build_object('present', present, 'absent', absent,"
                "         'symptomatic', symptomatic) FROM health.morning_checks m"
                "    WHERE m.school = $1 AND m.class = $2 AND m.date = g::date),"
                " coalesce((SELECT json_agg(json_build_object("
                "           'student', coalesce(student, '(anonymised)'),"
                "           'reason', reason, 'symptoms', symptoms, 'syndromes', syndromes,"
                "           'diagnosis', diagnosis, 'disease', disease,"
                "           'traced', traced_at IS NOT NULL,"
                "           'untraced', untraced_at IS NOT NULL) ORDER BY student)"
                "    FROM health.absences a"
                "    WHERE a.school = $1 AND a.class = $2 AND a.date = g::date), '[]'::json),"
                " (SELECT count(*) FROM health.absences a"
                "    WHERE a.school = $1 AND a.class = $2 AND a.date = g::date"
                "      AND a.reason = 'illness')"
                " FROM generate_series(($3::date - ($4::int - 1))::timestamp,"
                "                      $3::date::timestamp, interval '1 day') g ORDER BY g",
                4, p, &rc);
    if (!res)
        return s_db_error(reply, rc);
    json_t *days = json_array();
    for (int i = 0; i < PQntuples(res); i++)
        json_array_append_new(days,
                              json_pack("{s:s, s:o, s:o, s:o}", "date", PQgetvalue(res, i, 0),
                                        "morning_check", sc_pq_value(res, i, 1), "absences",
                                        sc_pq_value(res, i, 2), "illness", sc_pq_value(res, i, 3)));
    const char *from = PQntuples(res) ? PQgetvalue(res, 0, 0) : to;
    *reply = json_pack("{s:s, s:s, s:s, s:s, s:o}", "school", school, "class", klass, "from", from,
                       "to", to, "days", days);
    PQclear(res);
    return 0;
}

/* Clusters of a school or a district: the open ones, or all with "all": true. */
static int s_clusters(sc_ctx_t *ctx, const json_t *req, json_t **reply)
{
    const char *school = sc_json_str(req, "school"), *district = sc_json_str(req, "district");
    const char *all = sc_json_bool(req, "all", false) ? "true" : "false";
    const char *p[] = {school, district, all};
    int rc;
    PGresult *res = ha_exec(
        ctx,
        "SELECT id AS cluster, school, scope, scope_key, rule, syndrome, disease, cases,"
        " window_days, threshold, health.ymd(first_date) AS first_date,"
        " health.ymd(last_date) AS last_date, health.rfc3339(raised_at) AS raised_at, alerted,"
        " inhibited_by, health.rfc3339(closed_at) AS closed_at,"
        " (SELECT json_agg(coalesce(a.student, '(anonymised)') ORDER BY a.date, a.student)"
        "    FROM health.cluster_cases cc JOIN health.absences a ON a.id = cc.absence"
        "   WHERE cc.cluster = c.id) AS students"
        " FROM health.clusters c"
        " WHERE ($1::text IS NULL OR school = $1) AND ($2::text IS NULL OR district = $2)"
        "   AND ($3::boolean OR closed_at IS NULL)"
        " ORDER BY id",
        3, p, &rc);
    if (!res)
        return s_db_error(reply, rc);
    *reply = json_pack("{s:o}", "clusters", sc_pq_rows(res));
    PQclear(res);
    return 0;
}

static int s_district_day(sc_ctx_t *ctx, const json_t *req, json_t **reply)
{
    char tz[HA_TZ_MAX], date[11];
    int rc;
    if ((rc = s_code_arg(req, "district", reply)) < 0)
        return rc;
    const char *district = sc_json_str(req, "district");
    const char *p[] = {district};
    PGresult *res =
        ha_exec(ctx, "SELECT timezone FROM health.districts WHERE district = $1", 1, p, &rc);
    if (!res)
        return s_db_error(reply, rc);
    const char *def = ctx->host->default_timezone(ctx);
    snprintf(tz, sizeof tz, "%s", PQntuples(res) ? PQgetvalue(res, 0, 0) : def ? def : "UTC");
    PQclear(res);
    if ((rc = s_date_arg(ctx, req, "date", tz, date, reply)) < 0)
        return rc;
    *reply = ha_district_day(ctx, district, date, &rc);
    return *reply ? 0 : s_db_error(reply, rc);
}

static int s_ears(sc_ctx_t *ctx, const json_t *req, json_t **reply)
{
    char tz[HA_TZ_MAX], to[11], from[11];
    int rc;
    if ((rc = s_code_arg(req, "school", reply)) < 0)
        return rc;
    const char *school = sc_json_str(req, "school");
    ha_school_tz(ctx, school, tz);
    if ((rc = s_date_arg(ctx, req, "to", tz, to, reply)) < 0 ||
        (rc = s_date_arg(ctx, req, "from", tz, from, reply)) < 0)
        return rc;
    if (!sc_json_str(req, "from")) {
        int64_t d;
        sc_date_parse(to, &d);
        sc_date_format(d - 30, from);
    }
    const char *p[] = {school, from, to};
    PGresult *res = ha_exec(ctx,
                            "SELECT health.ymd(date) AS date, measure, algorithm, observed,"
                            " expected, sd, statistic, upper, alarm FROM health.ears"
                            " WHERE school = $1 AND date BETWEEN $2::date AND $3::date"
                            " ORDER BY date, measure, algorithm",
                            3, p, &rc);
    if (!res)
        return s_db_error(reply, rc);
    *reply = json_pack("{s:s, s:s, s:s, s:o}", "school", school, "from", from, "to", to, "results",
                       sc_pq_rows(res));
    PQclear(res);
    return 0;
}

/* One ledger section: its heading and the query giving (sort date, id, the columns…). */
struct s_section {
    const char *key, *title_zh, *title_en;
    const char *const *columns;
    const char *sql; /* $1 school, $2 from, $3 to, $4 after date, $5 after id, $6 limit */
};

static const char *const s_mc_cols[] = {"date",        "class", "present",     "absent",
                                        "symptomatic", "note",  "recorded_at", NULL};
static const char *const s_ab_cols[] = {
    "date",      "student",           "class",       "reason",
    "symptoms",  "syndromes",         "onset",       "seen_doctor",
    "diagnosis", "suspected_disease", "reported_at", "trace_due",
    "traced_at", "traced_by",         "untraced_at", NULL};
static const char *const s_cl_cols[] = {
    "cluster",     "scope",      "scope_key", "rule",      "syndrome", "disease",   "cases",
    "window_days", "first_date", "last_date", "raised_at", "alerted",  "closed_at", NULL};
static const char *const s_ea_cols[] = {"date",     "measure", "algorithm", "observed",
                                        "expected", "upper",   "statistic", NULL};

#define S_PAGE " AND (date, id) > ($4::date, $5::bigint) ORDER BY date, id LIMIT $6::int"

static const struct s_section s_sections[] = {
    {"health_morning_checks", "晨检记录", "Morning health checks", s_mc_cols,
     "SELECT health.ymd(date), id, health.ymd(date), class, present, absent, symptomatic, note,"
     " health.rfc3339(recorded_at)"
     " FROM health.morning_checks"
     " WHERE school = $1 AND date BETWEEN $2::date AND $3::date" S_PAGE},
    {"health_absences", "因病缺勤登记与病因追踪", "Absences and cause tracing", s_ab_cols,
     "SELECT health.ymd(date), id, health.ymd(date), coalesce(student, '(anonymised)'), class,"
     " reason, array_to_string(symptoms, ', '), array_to_string(syndromes, ', '),"
     " health.ymd(onset), seen_doctor, diagnosis, disease, health.rfc3339(reported_at),"
     " health.rfc3339(trace_due), health.rfc3339(traced_at), traced_by,"
     " health.rfc3339(untraced_at)"
     " FROM health.absences"
     " WHERE school = $1 AND date BETWEEN $2::date AND $3::date" S_PAGE},
    {"health_clusters", "疑似传染病聚集性疫情", "Suspected infectious-disease clusters", s_cl_cols,
     "SELECT health.ymd(date), id, id, scope, scope_key, rule, syndrome, disease, cases,"
     " window_days, health.ymd(first_date), health.ymd(last_date), health.rfc3339(raised_at),"
     " alerted, health.rfc3339(closed_at)"
     " FROM (SELECT first_date AS date, * FROM health.clusters) c"
     " WHERE school = $1 AND date BETWEEN $2::date AND $3::date" S_PAGE},
    {"health_aberrations", "因病缺勤异常（EARS）", "Illness-absence aberrations (EARS)", s_ea_cols,
     "SELECT health.ymd(date), id, health.ymd(date), measure, algorithm, observed, expected,"
     " upper, statistic"
     " FROM health.ears"
     " WHERE school = $1 AND alarm AND date BETWEEN $2::date AND $3::date" S_PAGE},
};
#define S_NSECTIONS (sizeof s_sections / sizeof s_sections[0])

/* Reads a cursor "<section>:<date>:<id>". */
static int s_cursor(const char *s, int *sec, char *date, int64_t *id)
{
    int64_t days;
    char d[16];
    long long n;
    int k;
    if (sscanf(s, "%d:%10[0-9-]:%lld%n", sec, d, &n, &k) != 3 || s[k] != '\0' || *sec < 0 ||
        *sec >= (int)S_NSECTIONS || sc_date_parse(d, &days) < 0 || n < 0)
        return -EINVAL;
    memcpy(date, d, 11); /* sc_date_parse accepted it: exactly 10 characters */
    *id = n;
    return 0;
}

/*
 * The ledger: this plugin's sections for a school and a period, in pages of
 * at most `limit` rows across sections. `next` resumes after the last row.
 */
static int s_ledger(sc_ctx_t *ctx, const json_t *req, json_t **reply)
{
    char detail[200], after_date[11] = "0001-01-01", after_id[24] = "0", lim[16];
    int rc, sec0 = 0;
    int64_t aid = 0;
    if ((rc = s_code_arg(req, "school", reply)) < 0)
        return rc;
    if (sc_check_date(req, "", "from", true, detail, sizeof detail) < 0 ||
        sc_check_date(req, "", "to", true, detail, sizeof detail) < 0 ||
        sc_check_int(req, "", "limit", false, 1, S_LEDGER_LIMIT_MAX, detail, sizeof detail) < 0 ||
        sc_check_string(req, "", "after", false, 64, detail, sizeof detail) < 0)
        return s_bad(reply, "%s", detail);
    const char *after = sc_json_str(req, "after");
    if (after && s_cursor(after, &sec0, after_date, &aid) < 0)
        return s_bad(reply, "after: %s is not a cursor this plugin gave", after);
    snprintf(after_id, sizeof after_id, "%" PRId64, aid);
    int limit = (int)sc_json_int(req, "limit", S_LEDGER_LIMIT), taken = 0;
    json_t *sections = json_array(), *next = json_null();
    for (int s = sec0; s < (int)S_NSECTIONS; s++) {
        const struct s_section *S = &s_sections[s];
        int remaining = limit - taken;
        snprintf(lim, sizeof lim, "%d", remaining + 1);
        const char *p[] = {sc_json_str(req, "school"), sc_json_str(req, "from"),
                           sc_json_str(req, "to"),     s == sec0 ? after_date : "0001-01-01",
                           s == sec0 ? after_id : "0", lim};
        PGresult *res = ha_exec(ctx, S->sql, 6, p, &rc);
        if (!res) {
            json_decref(sections);
            return s_db_error(reply, rc);
        }
        int got = PQntuples(res), use = got > remaining ? remaining : got;
        json_t *rows = json_array(), *cols = json_array();
        for (size_t c = 0; S->columns[c]; c++)
            json_array_append_new(cols, json_string(S->columns[c]));
        for (int r = 0; r < use; r++) {
            json_t *row = json_array();
            for (int c = 2; c < PQnfields(res); c++)
                json_array_append_new(row, sc_pq_value(res, r, c));
            json_array_append_new(rows, row);
        }
        if (got > remaining) {
            char cur[64];
            if (use > 0)
                snprintf(cur, sizeof cur, "%d:%s:%s", s, PQgetvalue(res, use - 1, 0),
                         PQgetvalue(res, use - 1, 1));
            else
                snprintf(cur, sizeof cur, "%d:0001-01-01:0", s);
            json_decref(next);
            next = json_string(cur);
        }
        PQclear(res);
        taken += use;
        if (use > 0 || got <= remaining)
            json_array_append_new(sections, json_pack("{s:s, s:s, s:s, s:o, s:o}", "key", S->key,
                                                      "title_zh", S->title_zh, "title_en",
                                                      S->title_en, "columns", cols, "rows", rows));
        else {
            json_decref(cols);
            json_decref(rows);
        }
        if (!json_is_null(next))
            break;
    }
    *reply = json_pack("{s:o, s:o}", "sections", sections, "next", next);
    return 0;
}

/* Year-end figures for a school or a district over [from, to]. */
static int s_figures(sc_ctx_t *ctx, const json_t *req, json_t **reply)
{
    char detail[200];
    const char *school = sc_json_str(req, "school"), *district = sc_json_str(req, "district");
    if (!school == !district)
        return s_bad(reply, "%s", "give one of school or district");
    if (sc_check_code(req, "", school ? "school" : "district", true, detail, sizeof detail) < 0 ||
        sc_check_date(req, "", "from", true, detail, sizeof detail) < 0 ||
        sc_check_date(req, "", "to", true, detail, sizeof detail) < 0)
        return s_bad(reply, "%s", detail);
    const char *p[] = {school, district, sc_json_str(req, "from"), sc_json_str(req, "to")};
    int rc;
    PGresult *res = ha_exec(
        ctx,
        "WITH s AS (SELECT $1::text AS school WHERE $1::text IS NOT NULL"
        "           UNION SELECT school FROM health.schools WHERE $2::text IS NOT NULL"
        "             AND district = $2),"
        " a AS (SELECT * FROM health.absences WHERE school IN (SELECT school FROM s)"
        "         AND date BETWEEN $3::date AND $4::date)"
        " SELECT (SELECT count(*) FROM a) AS absences,"
        "  (SELECT count(*) FROM a WHERE reason = 'illness') AS illness_absences,"
        "  (SELECT count(*) FROM a WHERE reason = 'personal') AS personal_absences,"
        "  (SELECT count(*) FROM a WHERE reason = 'unknown') AS unknown_absences,"
        "  (SELECT count(*) FROM a WHERE trace_due IS NOT NULL) AS to_trace,"
        "  (SELECT count(*) FROM a WHERE trace_due IS NOT NULL AND traced_at <= trace_due)"
        "     AS traced_on_time,"
        "  (SELECT count(*) FROM a WHERE untraced_at IS NOT NULL) AS untraced,"
        "  (SELECT count(*) FROM a WHERE disease IS NOT NULL) AS suspected_cases,"
        "  (SELECT count(*) FROM health.clusters c WHERE c.school IN (SELECT school FROM s)"
        "     AND c.first_date BETWEEN $3::date AND $4::date) AS clusters,"
        "  (SELECT count(*) FROM health.clusters c WHERE c.school IN (SELECT school FROM s)"
        "     AND c.first_date BETWEEN $3::date AND $4::date AND c.alerted) AS clusters_alerted,"
        "  (SELECT count(*) FROM health.morning_checks m WHERE m.school IN (SELECT school FROM s)"
        "     AND m.date BETWEEN $3::date AND $4::date) AS morning_checks,"
        "  (SELECT count(*) FROM health.ears e WHERE e.school IN (SELECT school FROM s)"
        "     AND e.alarm AND e.date BETWEEN $3::date AND $4::date) AS aberrations",
        4, p, &rc);
    if (!res)
        return s_db_error(reply, rc);
    json_t *rows = sc_pq_rows(res);
    PQclear(res);
    json_t *fig = json_incref(json_array_get(rows, 0));
    json_decref(rows);
    json_int_t to_trace = sc_json_int(fig, "to_trace", 0);
    json_object_set_new(
        fig, "tracing_rate",
        to_trace ? json_real((double)sc_json_int(fig, "traced_on_time", 0) / (double)to_trace)
                 : json_null());
    json_object_set_new(fig, school ? "school" : "district",
                        json_string(school ? school : district));
    json_object_set_new(fig, "from", json_string(sc_json_str(req, "from")));
    json_object_set_new(fig, "to", json_string(sc_json_str(req, "to")));
    *reply = fig;
    return 0;
}

int ha_query(sc_ctx_t *ctx, const json_t *req, json_t **reply)
{
    const char *what = sc_json_str(req, "what");
    if (what && strcmp(what, "day") == 0)
        return s_day(ctx, req, reply);
    if (what && strcmp(what, "class") == 0)
        return s_class(ctx, req, reply);
    if (what && strcmp(what, "clusters") == 0)
        return s_clusters(ctx, req, reply);
    if (what && strcmp(what, "district_day") == 0)
        return s_district_day(ctx, req, reply);
    if (what && strcmp(what, "ears") == 0)
        return s_ears(ctx, req, reply);
    if (what && strcmp(what, "ledger") == 0)
        return s_ledger(ctx, req, reply);
    if (what && strcmp(what, "figures") == 0)
        return s_figures(ctx, req, reply);
    return s_bad(reply, "%s",
                 "what: must be one of day, class, clusters, district_day, ears, ledger, figures");
}
