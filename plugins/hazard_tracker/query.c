/* hazard_tracker queries: open hazards, one hazard and its history, figures, ledger section. */
#include "hazard_tracker.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_OPEN_LIMIT 100
#define S_LEDGER_LIMIT 500
#define S_LIMIT_MAX 5000

static const char *const s_risks[] = {"general", "major", NULL};
static const char *const s_categories[] = {"building",  "electrical",   "fire",
                                           "equipment", "surroundings", "food_water",
                                           "traffic",   "other",        NULL};

/* The ledger export's columns, in the order of each row. */
static const char *const s_ledger_columns[] = {"hazard",
                                               "found_at",
                                               "title",
                                               "location",
                                               "category",
                                               "risk",
                                               "reporter",
                                               "origin",
                                               "assignee",
                                               "deadline",
                                               "rectified_by",
                                               "rectified_at",
                                               "measures",
                                               "verified_by",
                                               "verified_at",
                                               "status",
                                               "closed_at",
                                               "overdue",
                                               "responsible",
                                               "funds",
                                               "time_limit",
                                               "emergency_plan",
                                               "interim_measures",
                                               "withdrawn_reason",
                                               NULL};

/* Sets *reply to {"error": …} and returns -EINVAL. */
__attribute__((format(printf, 2, 3))) static int s_bad(json_t **reply, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    *reply = json_pack("{s:s}", "error", msg);
    return -EINVAL;
}

/* Reads the paging limit: absent → def; else 1..S_LIMIT_MAX. Returns 0 or -EINVAL (detail set). */
static int s_limit(const json_t *req, int def, int *limit, char *detail, size_t dlen)
{
    int rc = sc_check_int(req, "", "limit", false, 1, S_LIMIT_MAX, detail, dlen);
    *limit = (int)sc_json_int(req, "limit", def);
    return rc;
}

/*
 * Splits a paging cursor "time|code[|code]" into exactly `want` parts
 * (pointers into buf, which it writes). Returns whether it is one.
 */
static bool s_cursor_ok(const char *cursor, char *buf, size_t len, char **parts, int want)
{
    int n = 0;
    sc_time_t t;
    snprintf(buf, len, "%s", cursor);
    for (char *p = buf; p; n++) {
        if (n == want)
            return false;
        parts[n] = p;
        p = strchr(p, '|');
        if (p)
            *p++ = '\0';
    }
    return n == want && sc_time_parse(parts[0], &t) == 0;
}

/*
 * Runs a paged statement whose first column is the item (JSON) and second its
 * cursor; the statement asks for limit + 1 rows. Sets *items (new reference)
 * and *next (new reference: the cursor string, or null).
 */
static int s_page(sc_ctx_t *ctx, const char *sql, int n, const char *const *p, int limit,
                  json_t **items, json_t **next)
{
    int rc;
    PGresult *res = ht__exec(ctx, sql, n, p, &rc);
    if (!res)
        return rc;
    int rows = PQntuples(res);
    *items = json_array();
    *next = json_null();
    for (int i = 0; i < rows && i < limit; i++)
        json_array_append_new(*items, sc_pq_value(res, i, 0));
    if (rows > limit) {
        json_decref(*next);
        *next = json_string(PQgetvalue(res, limit - 1, 1));
    }
    PQclear(res);
    return 0;
}

/*
 * The codes of a district's schools as a JSON array text (caller frees), so
 * that a hazard reported before its school's directory entry arrived (and
 * so kept without a district) still counts for the district. NULL district:
 * "[]".
 */
static char *s_district_codes(sc_ctx_t *ctx, const char *district)
{
    json_t *codes = json_array(),
           *dir = district ? ctx->host->district_schools(ctx, district) : NULL;
    size_t i;
    const json_t *s;
    json_array_foreach(dir, i, s) if (sc_json_str(s, "school"))
        json_array_append_new(codes, json_string(sc_json_str(s, "school")));
    char *text = json_dumps(codes, JSON_COMPACT);
    json_decref(codes);
    json_decref(dir);
    return text;
}

/* what: "open" — unclosed hazards of a school, a district or all, soonest deadline first. */
static int s_open(sc_ctx_t *ctx, const json_t *req, json_t **reply)
{
    char detail[256], now_s[SC_TIME_LEN], limit_s[16], buf[256];
    char *cur[3] = {NULL, NULL, NULL};
    int limit, rc;
    json_t *items = NULL, *next = NULL;
    const json_t *overdue = json_object_get(req, "overdue");
    if (sc_check_code(req, "", "school", false, detail, sizeof detail) < 0 ||
        sc_check_code(req, "", "district", false, detail, sizeof detail) < 0 ||
        sc_check_enum(req, "", "risk", false, s_risks, detail, sizeof detail) < 0 ||
        sc_check_enum(req, "", "category", false, s_categories, detail, sizeof detail) < 0 ||
        sc_check_bool(req, "", "overdue", false, detail, sizeof detail) < 0 ||
        sc_check_string(req, "", "after", false, 200, detail, sizeof detail) < 0 ||
        s_limit(req, S_OPEN_LIMIT, &limit, detail, sizeof detail) < 0)
        return s_bad(reply, "%s", detail);
    const char *after = sc_json_str(req, "after");
    if (after && !s_cursor_ok(after, buf, sizeof buf, cur, 3))
        return s_bad(reply, "after: not a cursor this query returned");
    snprintf(limit_s, sizeof limit_s, "%d", limit + 1);
    char *codes = s_district_codes(ctx, sc_json_str(req, "district"));
    if (!codes)
        return -ENOMEM;
    const char *p[] = {sc_time_format(sc_now(ctx), now_s),
                       sc_json_str(req, "school"),
                       sc_json_str(req, "district"),
                       sc_json_str(req, "risk"),
                       sc_json_str(req, "category"),
                       json_is_boolean(overdue) ? (json_is_true(overdue) ? "true" : "false") : NULL,
                       cur[0],
                       cur[1],
                       cur[2],
                       limit_s,
                       codes};
    rc = s_page(
        ctx,
        "SELECT jsonb_build_object("
        "  'hazard', hazard, 'school', school, 'district', district, 'title', title,"
        "  'location', location, 'category', category, 'risk', risk, 'state', state,"
        "  'reporter', reporter, 'assignee', assignee,"
        "  'found_at', hazard.rfc3339(found_at), 'deadline', hazard.rfc3339(deadline),"
        "  'age_days', floor(extract(epoch FROM $1::timestamptz - found_at) / 86400)::int,"
        "  'days_to_deadline', floor(extract(epoch FROM deadline - $1::timestamptz) / 86400)::int,"
        "  'overdue', state IN ('reported', 'assigned') AND deadline < $1::timestamptz,"
        "  'round', round, 'reminders_sent', reminders_sent,"
        "  'missing', CASE WHEN risk = 'major' THEN hazard.missing(h) ELSE '[]' END,"
        "  'interim_measures', interim_measures),"
        "  hazard.rfc3339(deadline) || '|' || school || '|' || hazard"
        "  FROM hazard.hazards h"
        " WHERE state IN ('reported', 'assigned', 'rectified')"
        "   AND ($2::text IS NULL OR school = $2)"
        "   AND ($3::text IS NULL OR district = $3"
        "        OR school IN (SELECT jsonb_array_elements_text($11::jsonb)))"
        "   AND ($4::text IS NULL OR risk = $4) AND ($5::text IS NULL OR category = $5)"
        "   AND ($6::boolean IS NULL"
        "        OR (state IN ('reported', 'assigned') AND deadline < $1::timestamptz) = $6)"
        "   AND ($7::timestamptz IS NULL OR (deadline, school, hazard) > ($7, $8, $9))"
        " ORDER BY deadline, school, hazard LIMIT $10::int",
        11, p, limit, &items, &next);
    free(codes);
    if (rc < 0)
        return rc;
    *reply = json_pack("{s:s, s:o, s:o}", "now", now_s, "hazards", items, "next", next);
    return *reply ? 0 : -ENOMEM;
}

/* what: "hazard" — one hazard, everything kept about it, with its full history. */
static int s_hazard(sc_ctx_t *ctx, const json_t *req, json_t **reply)
{
    char detail[256], now_s[SC_TIME_LEN];
    int rc;
    if (sc_check_code(req, "", "school", true, detail, sizeof detail) < 0 ||
        sc_check_code(req, "", "hazard", true, detail, sizeof detail) < 0)
        return s_bad(reply, "%s", detail);
    const char *p[] = {sc_json_str(req, "school"), sc_json_str(req, "hazard"),
                       sc_time_format(sc_now(ctx), now_s)};
    PGresult *res = ht__exec(
        ctx,
        "SELECT jsonb_build_object("
        "  'hazard', hazard, 'school', school, 'district', district, 'timezone', timezone,"
        "  'title', title, 'description', description, 'location', location,"
        "  'category', category, 'risk', risk, 'reporter', reporter,"
        "  'found_at', hazard.rfc3339(found_at), 'reported_at', hazard.rfc3339(reported_at),"
        "  'origin', origin, 'attachments', attachments, 'report_event', report_event,"
        "  'state', state, 'assignee', assignee, 'assigned_by', assigned_by,"
        "  'assigned_at', hazard.rfc3339(assigned_at), 'round', round,"
        "  'deadline', hazard.rfc3339(deadline), 'deadline_given', deadline_given,"
        "  'overdue', state IN ('reported', 'assigned') AND deadline < $3::timestamptz,"
        "  'overdue_at', hazard.rfc3339(overdue_at), 'reminders_sent', reminders_sent,"
        "  'next_reminder_at', hazard.rfc3339(next_reminder_at),"
        "  'rectified_by', rectified_by, 'rectified_at', hazard.rfc3339(rectified_at),"
        "  'measures', measures, 'evidence', evidence,"
        "  'verified_by', verified_by, 'verified_at', hazard.rfc3339(verified_at),"
        "  'closed_at', hazard.rfc3339(closed_at), 'withdrawn_by', withdrawn_by,"
        "  'withdrawn_at', hazard.rfc3339(withdrawn_at), 'withdrawn_reason', withdrawn_reason,"
        "  'commitments', jsonb_build_object("
        "     'measures', c_measures, 'responsible', c_responsible, 'funds', c_funds,"
        "     'time_limit', hazard.rfc3339(c_time_limit), 'emergency_plan', c_emergency_plan,"
        "     'interim_measures', interim_measures, 'missing', hazard.missing(h)),"
        "  'updated_at', hazard.rfc3339(updated_at)),"
        "  (SELECT coalesce(jsonb_agg(jsonb_build_object("
        "     'seq', y.seq, 'at', hazard.rfc3339(y.at), 'action', y.action,"
        "     'from', y.state_from, 'to', y.state_to, 'actor', y.actor, 'round', y.round,"
        "     'event', y.event, 'data', y.data) ORDER BY y.seq), '[]')"
        "     FROM hazard.history y WHERE y.school = h.school AND y.hazard = h.hazard)"
        "  FROM hazard.hazards h WHERE school = $1 AND hazard = $2",
        3, p, &rc);
    if (!res)
        return rc;
    if (PQntuples(res) == 0) {
        PQclear(res);
        return s_bad(reply, "hazard: no hazard %s at school %s", p[1], p[0]);
    }
    *reply = json_pack("{s:o, s:o}", "hazard", sc_pq_value(res, 0, 0), "history",
                       sc_pq_value(res, 0, 1));
    PQclear(res);
    return *reply ? 0 : -ENOMEM;
}

/* Reads and checks from/to (dates, from <= to). */
static int s_period(const json_t *req, json_t **reply)
{
    char detail[256];
    int64_t from, to;
    if (sc_check_date(req, "", "from", true, detail, sizeof detail) < 0 ||
        sc_check_date(req, "", "to", true, detail, sizeof detail) < 0)
        return s_bad(reply, "%s", detail);
    sc_date_parse(sc_json_str(req, "from"), &from);
    sc_date_parse(sc_json_str(req, "to"), &to);
    if (to < from)
        return s_bad(reply, "to: must not be before from");
    return 0;
}

/* The figures of one school, all zero, for schools that found nothing. */
static json_t *s_zero_figures(void)
{
    return json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:n}", "found", 0, "major", 0,
                     "rectified_on_time", 0, "overdue", 0, "closed", 0, "still_open", 0,
                     "withdrawn", 0, "mean_days_to_close");
}

/*
 * what: "figures" — the numbers a district safety office compares schools by,
 * for hazards found in the period (local dates, inclusive), as they stood at
 * the end of the period (or now, if sooner).
 */
static int s_figures(sc_ctx_t *ctx, const json_t *req, json_t **reply)
{
    char detail[256], now_s[SC_TIME_LEN];
    int rc;
    json_t *out = NULL, *schools = NULL, *dir = NULL;
    PGresult *res = NULL;
    if (sc_check_code(req, "", "school", false, detail, sizeof detail) < 0 ||
        sc_check_code(req, "", "district", false, detail, sizeof detail) < 0)
        return s_bad(reply, "%s", detail);
    const char *school = sc_json_str(req, "school");
    const char *district = school ? NULL : sc_json_str(req, "district");
    if (!school && !district)
        return s_bad(reply, "school or district: one is required");
    if ((rc = s_period(req, reply)) < 0)
        return rc;
    char *codes = s_district_codes(ctx, district);
    if (!codes)
        return -ENOMEM;
    const char *p[] = {sc_time_format(sc_now(ctx), now_s),
                       sc_json_str(req, "from"),
                       sc_json_str(req, "to"),
                       school,
                       district,
                       codes};
    res = ht__exec(
        ctx,
        "WITH c AS ("
        "  SELECT h.school, h.hazard, h.risk, h.found_at, h.closed_at, h.withdrawn_at,"
        "         least($1::timestamptz,"
        "               ($3::date + 1)::timestamp AT TIME ZONE h.timezone) AS asof"
        "    FROM hazard.hazards h"
        "   WHERE ($4::text IS NULL OR h.school = $4)"
        "     AND ($5::text IS NULL OR h.district = $5"
        "          OR h.school IN (SELECT jsonb_array_elements_text($6::jsonb)))"
        "     AND h.found_at >= $2::date::timestamp AT TIME ZONE h.timezone"
        "     AND h.found_at < ($3::date + 1)::timestamp AT TIME ZONE h.timezone"
        "), s AS ("
        "  SELECT c.*,"
        "         coalesce(c.withdrawn_at <= c.asof, false) AS w,"
        "         coalesce(c.closed_at <= c.asof, false) AS cl,"
        "         EXISTS (SELECT 1 FROM hazard.history y"
        "                  WHERE y.school = c.school AND y.hazard = c.hazard AND y.at <= c.asof"
        "                    AND (y.action = 'overdue'"
        "                         OR (y.action = 'rectified' AND y.data->>'on_time' = 'false')))"
        "           AS od,"
        "         EXISTS (SELECT 1 FROM hazard.history y"
        "                  WHERE y.school = c.school AND y.hazard = c.hazard AND y.at <= c.asof"
        "                    AND y.action = 'rectified') AS rect"
        "    FROM c"
        ")"
        "SELECT school, jsonb_build_object("
        "  'found', count(*) FILTER (WHERE NOT w),"
        "  'major', count(*) FILTER (WHERE NOT w AND risk = 'major'),"
        "  'rectified_on_time', count(*) FILTER (WHERE NOT w AND rect AND NOT od),"
        "  'overdue', count(*) FILTER (WHERE NOT w AND od),"
        "  'closed', count(*) FILTER (WHERE cl),"
        "  'still_open', count(*) FILTER (WHERE NOT w AND NOT cl),"
        "  'withdrawn', count(*) FILTER (WHERE w),"
        "  'mean_days_to_close',"
        "     round(avg(extract(epoch FROM closed_at - found_at) / 86400) FILTER (WHERE cl), 1))"
        "  FROM s GROUP BY GROUPING SETS ((school), ())"
        " ORDER BY school NULLS FIRST",
        6, p, &rc);
    free(codes);
    if (!res)
        goto out;
    rc = -ENOMEM;
    /* The first row is the total (school NULL): there always is one. */
    if (!(out = sc_pq_value(res, 0, 1)) || !json_is_object(out))
        goto out;
    json_object_set_new(out, "from", json_string(sc_json_str(req, "from")));
    json_object_set_new(out, "to", json_string(sc_json_str(req, "to")));
    if (school) {
        json_object_set_new(out, "school", json_string(school));
    } else {
        json_object_set_new(out, "district", json_string(district));
        schools = json_object();
        /* Every school of the district appears, also those that found nothing. */
        dir = ctx->host->district_schools(ctx, district);
        size_t i;
        const json_t *s;
        json_array_foreach(dir, i, s) if (sc_json_str(s, "school"))
            json_object_set_new(schools, sc_json_str(s, "school"), s_zero_figures());
        for (int r = 1; r < PQntuples(res); r++)
            json_object_set_new(schools, PQgetvalue(res, r, 0), sc_pq_value(res, r, 1));
        json_object_set(out, "schools", schools);
    }
    *reply = out;
    out = NULL;
    rc = 0;
out:
    PQclear(res);
    json_decref(out);
    json_decref(schools);
    json_decref(dir);
    return rc;
}

/*
 * what: "ledger" — the school's section of the ledger export: hazards found in
 * the period or with anything recorded in it, oldest first, local times.
 */
static int s_ledger(sc_ctx_t *ctx, const json_t *req, json_t **reply)
{
    char detail[256], limit_s[16], buf[256];
    char *cur[2] = {NULL, NULL};
    int limit, rc;
    json_t *rows = NULL, *next = NULL, *columns = NULL;
    if (sc_check_code(req, "", "school", true, detail, sizeof detail) < 0 ||
        sc_check_string(req, "", "after", false, 200, detail, sizeof detail) < 0 ||
        s_limit(req, S_LEDGER_LIMIT, &limit, detail, sizeof detail) < 0)
        return s_bad(reply, "%s", detail);
    if ((rc = s_period(req, reply)) < 0)
        return rc;
    const char *after = sc_json_str(req, "after");
    if (after && !s_cursor_ok(after, buf, sizeof buf, cur, 2))
        return s_bad(reply, "after: not a cursor this query returned");
    snprintf(limit_s, sizeof limit_s, "%d", limit + 1);
    const char *p[] = {sc_json_str(req, "school"),
                       sc_json_str(req, "from"),
                       sc_json_str(req, "to"),
                       cur[0],
                       cur[1],
                       limit_s};
    rc = s_page(
        ctx,
        "SELECT jsonb_build_array(hazard, hazard.local_text(found_at, timezone), title,"
        "  location, category, risk, reporter,"
        "  concat_ws(':', origin->>'kind', origin->>'template', origin->>'task',"
        "            origin->>'item', origin->>'system', origin->>'ref'),"
        "  assignee, hazard.local_text(deadline, timezone), rectified_by,"
        "  hazard.local_text(rectified_at, timezone), measures, verified_by,"
        "  hazard.local_text(verified_at, timezone), state,"
        "  hazard.local_text(coalesce(closed_at, withdrawn_at), timezone),"
        "  EXISTS (SELECT 1 FROM hazard.history y WHERE y.school = h.school"
        "           AND y.hazard = h.hazard AND (y.action = 'overdue'"
        "           OR (y.action = 'rectified' AND y.data->>'on_time' = 'false'))),"
        "  c_responsible, c_funds, hazard.local_text(c_time_limit, timezone),"
        "  c_emergency_plan, interim_measures, withdrawn_reason),"
        "  hazard.rfc3339(found_at) || '|' || hazard"
        "  FROM hazard.hazards h"
        " WHERE school = $1"
        "   AND ((found_at >= $2::date::timestamp AT TIME ZONE timezone"
        "         AND found_at < ($3::date + 1)::timestamp AT TIME ZONE timezone)"
        "        OR EXISTS (SELECT 1 FROM hazard.history y"
        "                    WHERE y.school = h.school AND y.hazard = h.hazard"
        "                      AND y.action <> 'reminder'"
        "                      AND y.at >= $2::date::timestamp AT TIME ZONE h.timezone"
        "                      AND y.at < ($3::date + 1)::timestamp AT TIME ZONE h.timezone))"
        "   AND ($4::timestamptz IS NULL OR (found_at, hazard) > ($4, $5))"
        " ORDER BY found_at, hazard LIMIT $6::int",
        6, p, limit, &rows, &next);
    if (rc < 0)
        return rc;
    columns = json_array();
    for (size_t i = 0; s_ledger_columns[i]; i++)
        json_array_append_new(columns, json_string(s_ledger_columns[i]));
    *reply = json_pack("{s:[{s:s, s:s, s:s, s:o, s:o}], s:o}", "sections", "key", "hazards",
                       "title_zh", "隐患排查与整改", "title_en", "Hazards and rectification",
                       "columns", columns, "rows", rows, "next", next);
    return *reply ? 0 : -ENOMEM;
}

static const struct {
    const char *what;
    int (*run)(sc_ctx_t *ctx, const json_t *req, json_t **reply);
} s_queries[] = {
    {"open", s_open},
    {"hazard", s_hazard},
    {"figures", s_figures},
    {"ledger", s_ledger},
};

int ht__query(sc_ctx_t *ctx, const ht_config_t *cfg, const json_t *req, json_t **reply)
{
    (void)cfg;
    const char *what = sc_json_str(req, "what");
    for (size_t i = 0; what && i < sizeof s_queries / sizeof s_queries[0]; i++)
        if (strcmp(what, s_queries[i].what) == 0)
            return s_queries[i].run(ctx, req, reply);
    return s_bad(reply, "what: must be one of open, hazard, figures, ledger");
}
