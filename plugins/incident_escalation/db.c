/* Small database helpers of incident_escalation: statements, timeline entries, loading rows. */
#include "ie.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

PGresult *ie_sql(sc_ctx_t *ctx, const char *sql, int n, const char *const *params, int *rc)
{
    PGresult *res = sc_pq_exec(sc_db(ctx), sql, n, params, rc);
    if (!res)
        SC_LOG_ERR(ctx, "statement failed: %s", PQerrorMessage(sc_db(ctx)));
    return res;
}

int ie_exec(sc_ctx_t *ctx, const char *sql, int n, const char *const *params)
{
    int rc;
    PQclear(ie_sql(ctx, sql, n, params, &rc));
    return rc;
}

int ie_timeline(sc_ctx_t *ctx, const char *code, sc_time_t at, const char *what, int level,
                const char *person, const json_t *detail, int64_t event)
{
    char when[SC_TIME_LEN], lv[16], evs[24];
    char *dj = detail ? json_dumps(detail, JSON_COMPACT | JSON_SORT_KEYS) : strdup("{}");
    int rc = -ENOMEM;
    if (!dj)
        return rc;
    snprintf(lv, sizeof lv, "%d", level);
    snprintf(evs, sizeof evs, "%" PRId64, event);
    const char *p[] = {code, sc_time_format(at, when), what, level > 0 ? lv : NULL, person,
                       dj,   event > 0 ? evs : NULL};
    rc = ie_exec(ctx,
                 "INSERT INTO incident.timeline (code, at, what, level, person, detail, event) "
                 "VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7)",
                 7, p);
    free(dj);
    return rc;
}

int ie_load(sc_ctx_t *ctx, const char *code, json_t **out)
{
    const char *p[] = {code};
    int rc;
    *out = NULL;
    PGresult *res = ie_sql(
        ctx,
        "SELECT code, sort, origin, school, district, tz, class, kind, severity, dead, injured, "
        "location, summary, reporter, subject, group_key, count, policy, chain, data, status, "
        "incident.rfc3339(occurred_at, tz) AS occurred_at, "
        "(extract(epoch FROM occurred_at) * 1000000)::bigint AS occurred_us, "
        "report_due_at IS NOT NULL AS report_required, report_submitted_at IS NOT NULL AS "
        "report_submitted, "
        "(SELECT coalesce(max(level), 0) FROM incident.levels l WHERE l.code = e.code) AS level "
        "FROM incident.escalations e WHERE code = $1",
        1, p, &rc);
    if (!res)
        return rc;
    if (PQntuples(res) == 1) {
        json_t *rows = sc_pq_rows(res);
        *out = json_incref(json_array_get(rows, 0));
        json_decref(rows);
    }
    PQclear(res);
    return 0;
}

int ie_reject(sc_ctx_t *ctx, const sc_event_t *ev, const char *key, const char *value,
              const char *reason)
{
    json_t *data = json_pack("{s:I, s:s, s:s}", "event", (json_int_t)ev->id, "type", ev->type,
                             "reason", reason);
    if (!data)
        return -ENOMEM;
    if (key && value)
        json_object_set_new(data, key, json_string(value));
    SC_LOG_INFO(ctx, "rejected %s (event %" PRId64 "): %s", ev->type, ev->id, reason);
    int rc = sc_emit(ctx, &(sc_emit_t){.type = "incident.rejected",
                                       .school = ev->school,
                                       .district = ev->district,
                                       .data = data});
    json_decref(data);
    return rc;
}

void ie_school_tz(sc_ctx_t *ctx, const char *school, char *buf, size_t len)
{
    json_t *s = school ? ctx->host->school(ctx, school) : NULL;
    const char *tz = sc_json_str(s, "timezone");
    if (!tz || !*tz)
        tz = ctx->host->default_timezone(ctx);
    snprintf(buf, len, "%s", tz && *tz ? tz : "UTC");
    json_decref(s);
}
