/* Read requests of incident_escalation: open escalations, timelines, silences, figures, ledger. */
#include "ie.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The columns describing one escalation, with its levels and who has not acknowledged. */
#define S_ESC_COLUMNS                                                                              \
    "SELECT e.code, e.sort, e.origin AS type, e.school, e.district, e.class, e.kind, "             \
    "e.severity, e.dead, e.injured, e.location, e.summary, e.reporter, e.subject, e.count, "       \
    "e.status, e.policy, incident.rfc3339(e.occurred_at, e.tz) AS occurred_at, "                   \
    "incident.rfc3339(e.opened_at, e.tz) AS opened_at, "                                           \
    "incident.rfc3339(e.last_at, e.tz) AS last_at, "                                               \
    "incident.rfc3339(e.first_ack_at, e.tz) AS first_acknowledged_at, "                            \
    "incident.rfc3339(e.resolved_at, e.tz) AS resolved_at, e.resolved_by, e.resolution, "          \
    "incident.rfc3339(e.report_due_at, e.tz) AS report_due_at, "                                   \
    "incident.rfc3339(e.report_submitted_at, e.tz) AS report_submitted_at, "                       \
    "(SELECT coalesce(max(l.level), 0) FROM incident.levels l WHERE l.code = e.code) AS level, "   \
    "(SELECT coalesce(jsonb_agg(DISTINCT t.person), '[]') FROM incident.targets t "                \
    "  JOIN incident.levels l USING (code, level) WHERE t.code = e.code "                          \
    "  AND l.acked_at IS NULL) AS unacknowledged, "                                                \
    "(SELECT coalesce(jsonb_agg(jsonb_build_object('level', l.level, 'cause', l.cause, "           \
    "   'roles', l.roles, 'told_at', incident.rfc3339(l.told_at, e.tz), "                          \
    "   'ack_due', incident.rfc3339(l.ack_due, e.tz), "                                            \
    "   'acknowledged_at', incident.rfc3339(l.acked_at, e.tz), 'acknowledged_by', l.acked_by, "    \
    "   'repeats', l.repeats, 'targets', (SELECT coalesce(jsonb_agg(jsonb_build_object("           \
    "     'person', t.person, 'role', t.role, 'acknowledged', t.acked_at IS NOT NULL, "            \
    "     'unreachable', t.unreachable) ORDER BY t.person), '[]') FROM incident.targets t "        \
    "     WHERE t.code = l.code AND t.level = l.level)) ORDER BY l.level), '[]') "                 \
    "  FROM incident.levels l WHERE l.code = e.code) AS levels "                                   \
    "FROM incident.escalations e "

static json_t *s_error(const char *fmt, const char *arg)
{
    char buf[300];
    snprintf(buf, sizeof buf, fmt, arg);
    return json_pack("{s:s}", "error", buf);
}

/* Runs sql and puts its rows under `key` of a new reply. */
static int s_rows(sc_ctx_t *ctx, const char *sql, int n, const char *const *p, const char *key,
                  json_t **reply)
{
    int rc;
    PGresult *res = ie_sql(ctx, sql, n, p, &rc);
    if (!res)
        return rc;
    *reply = json_pack("{s:o}", key, sc_pq_rows(res));
    PQclear(res);
    return *reply ? 0 : -ENOMEM;
}

static int s_open(sc_ctx_t *ctx, const json_t *req, json_t **reply)
{
    const char *p[] = {sc_json_str(req, "school"), sc_json_str(req, "district"),
                       sc_json_str(req, "sort")};
    return s_rows(ctx,
                  S_ESC_COLUMNS
                  "WHERE e.status <> 'resolved' AND ($1::text IS NULL OR e.school = $1) "
                  "AND ($2::text IS NULL OR e.district = $2) AND ($3::text IS NULL OR e.sort = $3) "
                  "ORDER BY e.opened_at, e.code",
                  3, p, "open", reply);
}

static int s_reports(sc_ctx_t *ctx, const json_t *req, json_t **reply)
{
    const char *p[] = {sc_json_str(req, "school"), sc_json_str(req, "district")};
    return s_rows(ctx,
                  S_ESC_COLUMNS
                  "WHERE e.report_due_at IS NOT NULL AND e.report_submitted_at IS NULL "
                  "AND ($1::text IS NULL OR e.school = $1) AND ($2::text IS NULL OR e.district = "
                  "$2) ORDER BY e.report_due_at, e.code",
                  2, p, "reports", reply);
}

static int s_timeline(sc_ctx_t *ctx, const json_t *req, json_t **reply)
{
    const char *code = sc_json_str(req, "incident");
    const char *p[] = {code};
    int rc;
    if (!code) {
        *reply = s_error("incident: required%s", "");
        return -EINVAL;
    }
    PGresult *res = ie_sql(ctx, S_ESC_COLUMNS "WHERE e.code = $1", 1, p, &rc);
    if (!res)
        return rc;
    if (PQntuples(res) == 0) {
        PQclear(res);
        *reply = s_error("incident: %s is not known", code);
        return -EINVAL;
    }
    json_t *rows = sc_pq_rows(res);
    PQclear(res);
    res = ie_sql(ctx,
                 "SELECT incident.rfc3339(t.at, e.tz) AS at, t.what, t.level, t.person, t.detail, "
                 "t.event FROM incident.timeline t JOIN incident.escalations e USING (code) "
                 "WHERE t.code = $1 ORDER BY t.at, t.id",
                 1, p, &rc);
    if (!res) {
        json_decref(rows);
        return rc;
    }
    *reply =
        json_pack("{s:O, s:o}", "incident", json_array_get(rows, 0), "timeline", sc_pq_rows(res));
    PQclear(res);
    json_decref(rows);
    return *reply ? 0 : -ENOMEM;
}

static int s_silences(sc_ctx_t *ctx, const json_t *req, json_t **reply)
{
    const char *p[] = {sc_json_str(req, "school"), sc_json_str(req, "district"),
                       sc_json_bool(req, "all", false) ? "t" : "f"};
    return s_rows(ctx,
                  "SELECT silence, school, district, matcher, reason, created_by, status, "
                  "suppressed, incident.rfc3339(starts_at, 'UTC') AS starts_at, "
                  "incident.rfc3339(ends_at, 'UTC') AS ends_at, "
                  "incident.rfc3339(closed_at, 'UTC') AS closed_at FROM incident.silences "
                  "WHERE ($1::text IS NULL OR school = $1) AND ($2::text IS NULL OR district = $2) "
                  "AND ($3::boolean OR status = 'active') ORDER BY starts_at, silence",
                  3, p, "silences", reply);
}

/* Checks {from, to} dates; writes an error reply on failure. */
static int s_period(const json_t *req, json_t **reply)
{
    int64_t a, b;
    if (!sc_json_str(req, "from") || sc_date_parse(sc_json_str(req, "from"), &a) < 0) {
        *reply = s_error("from: expected a date YYYY-MM-DD%s", "");
        return -EINVAL;
    }
    if (!sc_json_str(req, "to") || sc_date_parse(sc_json_str(req, "to"), &b) < 0) {
        *reply = s_error("to: expected a date YYYY-MM-DD%s", "");
        return -EINVAL;
    }
    if (b < a) {
        *reply = s_error("to: must not be before from%s", "");
        return -EINVAL;
    }
    return 0;
}

static int s_figures(sc_ctx_t *ctx, const json_t *req, json_t **reply)
{
    const char *school = sc_json_str(req, "school"), *district = sc_json_str(req, "district");
    int rc;
    if (!school && !district) {
        *reply = s_error("school: school or district required%s", "");
        return -EINVAL;
    }
    if ((rc = s_period(req, reply)) < 0)
        return rc;
    const char *p[] = {school, district, sc_json_str(req, "from"), sc_json_str(req, "to")};
    PGresult *res = ie_sql(
        ctx,
        "WITH e AS (SELECT * FROM incident.escalations WHERE ($1::text IS NULL OR school = $1) "
        "  AND ($2::text IS NULL OR district = $2) "
        "  AND (occurred_at AT TIME ZONE tz)::date BETWEEN $3::date AND $4::date), "
        "i AS (SELECT * FROM e WHERE sort = 'incident'), "
        "a AS (SELECT * FROM e WHERE sort = 'alert'), "
        "lv AS (SELECT l.code, max(l.level) AS reached FROM incident.levels l "
        "  WHERE l.code IN (SELECT code FROM e) GROUP BY l.code), "
        "ack AS (SELECT extract(epoch FROM first_ack_at - opened_at)::float8 AS s FROM i "
        "  WHERE first_ack_at IS NOT NULL), "
        "res AS (SELECT extract(epoch FROM resolved_at - opened_at)::float8 AS s FROM i "
        "  WHERE resolved_at IS NOT NULL) "
        "SELECT jsonb_build_object("
        " 'incidents', (SELECT count(*) FROM i),"
        " 'incidents_by_kind', (SELECT coalesce(jsonb_object_agg(kind, n), '{}') FROM "
        "   (SELECT coalesce(kind, 'unknown') AS kind, count(*) AS n FROM i GROUP BY 1) x),"
        " 'incidents_by_severity', (SELECT coalesce(jsonb_object_agg(severity, n), '{}') FROM "
        "   (SELECT coalesce(severity, 'unknown') AS severity, count(*) AS n FROM i GROUP BY 1) x),"
        " 'dead', (SELECT coalesce(sum(dead), 0) FROM i),"
        " 'injured', (SELECT coalesce(sum(injured), 0) FROM i),"
        " 'incidents_acknowledged', (SELECT count(*) FROM i WHERE first_ack_at IS NOT NULL),"
        " 'incidents_resolved', (SELECT count(*) FROM i WHERE resolved_at IS NOT NULL),"
        " 'incidents_open', (SELECT count(*) FROM i WHERE status <> 'resolved'),"
        " 'time_to_acknowledge_s', (SELECT jsonb_build_object('count', count(*), "
        "   'mean', round(avg(s)::numeric, 1), 'median', percentile_cont(0.5) WITHIN GROUP "
        "   (ORDER BY s), 'max', max(s)) FROM ack),"
        " 'time_to_resolve_s', (SELECT jsonb_build_object('count', count(*), "
        "   'mean', round(avg(s)::numeric, 1), 'median', percentile_cont(0.5) WITHIN GROUP "
        "   (ORDER BY s), 'max', max(s)) FROM res),"
        " 'incidents_by_level_reached', (SELECT coalesce(jsonb_object_agg(reached, n), '{}') FROM "
        "   (SELECT coalesce(lv.reached, 0) AS reached, count(*) AS n FROM i "
        "    LEFT JOIN lv USING (code) GROUP BY 1) x),"
        " 'alerts', (SELECT count(*) FROM a),"
        " 'alert_events', (SELECT coalesce(sum(count), 0) FROM a),"
        " 'alerts_by_type', (SELECT coalesce(jsonb_object_agg(origin, n), '{}') FROM "
        "   (SELECT origin, count(*) AS n FROM a GROUP BY origin) x),"
        " 'alerts_acknowledged', (SELECT count(*) FROM a WHERE first_ack_at IS NOT NULL),"
        " 'reports_required', (SELECT count(*) FROM e WHERE report_due_at IS NOT NULL),"
        " 'reports_on_time', (SELECT count(*) FROM e WHERE report_submitted_at <= report_due_at),"
        " 'reports_late', (SELECT count(*) FROM e WHERE report_submitted_at > report_due_at),"
        " 'reports_missing', (SELECT count(*) FROM e WHERE report_due_at IS NOT NULL "
        "   AND report_submitted_at IS NULL),"
        " 'suppressed', (SELECT coalesce(jsonb_object_agg(cause, n), '{}') FROM "
        "   (SELECT cause, count(*) AS n FROM incident.suppressed s "
        "    WHERE ($1::text IS NULL OR s.school = $1) AND ($2::text IS NULL OR s.district = $2) "
        "    AND (s.at AT TIME ZONE s.tz)::date BETWEEN $3::date AND $4::date GROUP BY cause) x)"
        ")",
        4, p, &rc);
    if (!res)
        return rc;
    json_t *f = sc_pq_value(res, 0, 0);
    PQclear(res);
    if (school)
        json_object_set_new(f, "school", json_string(school));
    if (district)
        json_object_set_new(f, "district", json_string(district));
    json_object_set_new(f, "from", json_string(sc_json_str(req, "from")));
    json_object_set_new(f, "to", json_string(sc_json_str(req, "to")));
    *reply = f;
    return 0;
}

/* One page of the school's ledger: incidents, alerts and alarms recorded without escalation. */
static int s_ledger(sc_ctx_t *ctx, const json_t *req, json_t **reply)
{
    const char *school = sc_json_str(req, "school");
    const json_t *after = json_object_get(req, "after");
    json_int_t limit = sc_json_int(req, "limit", 500);
    char after_s[24], limit_s[24];
    int rc;
    if (!school) {
        *reply = s_error("school: required%s", "");
        return -EINVAL;
    }
    if ((rc = s_period(req, reply)) < 0)
        return rc;
    long long a = 0;
    if (json_is_integer(after))
        a = json_integer_value(after);
    else if (json_is_string(after))
        a = strtoll(json_string_value(after), NULL, 10);
    else if (after && !json_is_null(after)) {
        *reply = s_error("after: expected a cursor from a previous page%s", "");
        return -EINVAL;
    }
    if (limit < 1 || limit > 5000) {
        *reply = s_error("limit: must be between 1 and 5000%s", "");
        return -EINVAL;
    }
    snprintf(after_s, sizeof after_s, "%lld", a);
    snprintf(limit_s, sizeof limit_s, "%" JSON_INTEGER_FORMAT, limit + 1);
    const char *p[] = {school, sc_json_str(req, "from"), sc_json_str(req, "to"), after_s, limit_s};
    PGresult *res = ie_sql(
        ctx,
        "SELECT seq, section, r FROM ("
        " SELECT e.seq, e.sort AS section, CASE WHEN e.sort = 'incident' THEN jsonb_build_array("
        "   e.code, incident.rfc3339(e.occurred_at, e.tz), e.kind, e.severity, e.dead, e.injured,"
        "   e.location, e.summary, e.reporter, lv.reached,"
        "   incident.rfc3339(e.first_ack_at, e.tz), incident.rfc3339(e.resolved_at, e.tz),"
        "   e.resolved_by, e.resolution, incident.rfc3339(e.report_due_at, e.tz),"
        "   incident.rfc3339(e.report_submitted_at, e.tz))"
        "  ELSE jsonb_build_array(e.code, incident.rfc3339(e.opened_at, e.tz), e.origin,"
        "   e.subject, e.count, lv.reached, incident.rfc3339(e.first_ack_at, e.tz),"
        "   incident.rfc3339(e.resolved_at, e.tz), e.resolution) END AS r"
        " FROM incident.escalations e LEFT JOIN LATERAL (SELECT max(l.level) AS reached"
        "   FROM incident.levels l WHERE l.code = e.code) lv ON true"
        " WHERE e.school = $1 AND (e.occurred_at AT TIME ZONE e.tz)::date BETWEEN $2::date AND "
        "   $3::date AND e.seq > $4::bigint"
        " UNION ALL"
        " SELECT s.seq, 'suppressed', jsonb_build_array(incident.rfc3339(s.at, s.tz), s.origin,"
        "   s.cause, s.ref, s.data)"
        " FROM incident.suppressed s WHERE s.school = $1 AND (s.at AT TIME ZONE s.tz)::date "
        "   BETWEEN $2::date AND $3::date AND s.seq > $4::bigint"
        ") x ORDER BY seq LIMIT $5::bigint",
        5, p, &rc);
    if (!res)
        return rc;
    json_t *inc = json_array(), *al = json_array(), *sup = json_array();
    int n = PQntuples(res);
    char next[24] = "";
    for (int i = 0; i < n && i < limit; i++) {
        const char *section = PQgetvalue(res, i, 1);
        json_t *row = sc_pq_value(res, i, 2);
        json_array_append_new(strcmp(section, "incident") == 0 ? inc
                              : strcmp(section, "alert") == 0  ? al
                                                               : sup,
                              row);
        if (n > limit && i == limit - 1)
            snprintf(next, sizeof next, "%s", PQgetvalue(res, i, 0));
    }
    PQclear(res);
    *reply = json_pack(
        "{s:[{s:s, s:s, s:s, s:[ssssssssssssssss], s:o},"
        "    {s:s, s:s, s:s, s:[sssssssss], s:o},"
        "    {s:s, s:s, s:s, s:[sssss], s:o}], s:o}",
        "sections", "key", "incidents", "title_zh", "安全事故与突发事件", "title_en",
        "Incidents and emergencies", "columns", "incident", "occurred_at", "kind", "severity",
        "dead", "injured", "location", "summary", "reporter", "level_reached", "acknowledged_at",
        "resolved_at", "resolved_by", "resolution", "report_due_at", "report_submitted_at", "rows",
        inc, "key", "alerts", "title_zh", "预警与逐级上报", "title_en", "Alerts and escalations",
        "columns", "alert", "opened_at", "type", "subject", "count", "level_reached",
        "acknowledged_at", "resolved_at", "resolution", "rows", al, "key", "alarms_not_escalated",
        "title_zh", "未升级的报警（演练、静默、测试）", "title_en",
        "Alarms recorded without escalation (drills, silences, tests)", "columns", "at", "type",
        "cause", "ref", "data", "rows", sup, "next", next[0] ? json_string(next) : json_null());
    return *reply ? 0 : -ENOMEM;
}

int ie_query(sc_ctx_t *ctx, ie_state_t *st, const json_t *req, json_t **reply)
{
    (void)st;
    const char *what = sc_json_str(req, "what");
    *reply = NULL;
    if (what && strcmp(what, "open") == 0)
        return s_open(ctx, req, reply);
    if (what && strcmp(what, "timeline") == 0)
        return s_timeline(ctx, req, reply);
    if (what && strcmp(what, "reports") == 0)
        return s_reports(ctx, req, reply);
    if (what && strcmp(what, "silences") == 0)
        return s_silences(ctx, req, reply);
    if (what && strcmp(what, "figures") == 0)
        return s_figures(ctx, req, reply);
    if (what && strcmp(what, "ledger") == 0)
        return s_ledger(ctx, req, reply);
    *reply =
        s_error("what: must be one of open, timeline, reports, silences, figures, ledger%s", "");
    return -EINVAL;
}
