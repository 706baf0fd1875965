/* hazard_tracker state machine: applies hazard.* events to the ledger, or answers rejected. */
#include "hazard_tracker.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Columns of the row s_load() reads. */
enum {
    C_STATE,
    C_RISK,
    C_RECTIFIED_BY,
    C_ROUND,
    C_DEADLINE,
    C_TIMEZONE,
    C_DISTRICT,
    C_TITLE,
    C_MISSING,
    C_ASSIGNEE,
};

/* One event being applied. */
typedef struct s_op {
    sc_ctx_t *ctx;
    const ht_config_t *cfg;
    const sc_event_t *ev;
    const char *code;     /* data.hazard (borrowed from the event) */
    PGresult *row;        /* the hazard, locked; NULL when it does not exist */
    char at[SC_TIME_LEN]; /* the event's occurred_at, RFC 3339 */
    char now[SC_TIME_LEN];
    char evid[24];
} s_op_t;

PGresult *ht__exec(sc_ctx_t *ctx, const char *sql, int n, const char *const *params, int *rc)
{
    PGconn *conn = sc_db(ctx);
    PGresult *res = sc_pq_exec(conn, sql, n, params, rc);
    if (!res)
        SC_LOG_ERR(ctx, "statement failed: %s", PQerrorMessage(conn));
    return res;
}

/* Runs a statement whose result is not needed. */
static int s_run(sc_ctx_t *ctx, const char *sql, int n, const char *const *params)
{
    int rc;
    PGresult *res = ht__exec(ctx, sql, n, params, &rc);
    PQclear(res);
    return rc;
}

int ht__history(sc_ctx_t *ctx, const char *school, const char *hazard, sc_time_t at, int64_t event,
                const char *action, const char *from, const char *to, const char *actor, int round,
                const json_t *data)
{
    char at_s[SC_TIME_LEN], now_s[SC_TIME_LEN], ev_s[24], round_s[16];
    char *data_s = data ? json_dumps(data, JSON_COMPACT) : NULL;
    int rc = -ENOMEM;
    if (data && !data_s)
        return rc;
    snprintf(ev_s, sizeof ev_s, "%" PRId64, event);
    snprintf(round_s, sizeof round_s, "%d", round);
    const char *p[] = {school,
                       hazard,
                       sc_time_format(at, at_s),
                       sc_time_format(sc_now(ctx), now_s),
                       event ? ev_s : NULL,
                       action,
                       from,
                       to,
                       actor,
                       round_s,
                       data_s ? data_s : "{}"};
    rc = s_run(ctx,
               "INSERT INTO hazard.history (school, hazard, at, recorded_at, event, action,"
               "  state_from, state_to, actor, round, data)"
               " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
               11, p);
    free(data_s);
    return rc;
}

static const char *s_col(const s_op_t *op, int col)
{
    return PQgetisnull(op->row, 0, col) ? NULL : PQgetvalue(op->row, 0, col);
}

static bool s_is(const s_op_t *op, const char *state)
{
    return strcmp(s_col(op, C_STATE), state) == 0;
}

/* Reads and locks the hazard the event names; op->row stays NULL when there is none. */
static int s_load(s_op_t *op)
{
    const char *p[] = {op->ev->school, op->code};
    int rc;
    PGresult *res = ht__exec(op->ctx,
                             "SELECT state, risk, rectified_by, round, deadline, timezone,"
                             "       district, title, hazard.missing(h), assignee"
                             "  FROM hazard.hazards h WHERE school = $1 AND hazard = $2"
                             "   FOR UPDATE",
                             2, p, &rc);
    if (!res)
        return rc;
    if (PQntuples(res) == 1)
        op->row = res;
    else
        PQclear(res);
    return 0;
}

/*
 * Answers an event that cannot be applied: emits hazard.rejected {event,
 * hazard, type, rule, reason}. `rule` is a stable token, `reason` the text a
 * person reads. Nothing else is written. Returns 0 or the emit's error.
 */
__attribute__((format(printf, 3, 4))) static int s_reject(s_op_t *op, const char *rule,
                                                          const char *fmt, ...)
{
    char reason[512], id[48];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    json_t *data =
        json_pack("{s:I, s:s?, s:s, s:s, s:s}", "event", (json_int_t)op->ev->id, "hazard", op->code,
                  "type", op->ev->type, "rule", rule, "reason", reason);
    if (!data)
        return -ENOMEM;
    snprintf(id, sizeof id, "rejected:%" PRId64, op->ev->id);
    int rc = sc_emit(op->ctx, &(sc_emit_t){.type = "hazard.rejected",
                                           .school = op->ev->school,
                                           .district = op->ev->district,
                                           .id = id,
                                           .data = data});
    json_decref(data);
    SC_LOG_INFO(op->ctx, "event %" PRId64 " (%s) rejected: %s", op->ev->id, op->ev->type, reason);
    return rc;
}

static int s_reject_unknown(s_op_t *op)
{
    return s_reject(op, "unknown_hazard", "no hazard %s at school %s", op->code, op->ev->school);
}

static int s_reject_state(s_op_t *op, const char *needs)
{
    return s_reject(op, "wrong_state", "hazard %s is %s: %s applies to a hazard that is %s",
                    op->code, s_col(op, C_STATE), op->ev->type, needs);
}

/* The default deadline: the end (23:59:59 local) of the day `days` after `from` at the school. */
static int s_deadline_default(s_op_t *op, sc_time_t from, int days, const char *tz, sc_time_t *out)
{
    char from_s[SC_TIME_LEN], days_s[16];
    int rc;
    snprintf(days_s, sizeof days_s, "%d", days);
    const char *p[] = {sc_time_format(from, from_s), tz, days_s};
    PGresult *res = ht__exec(op->ctx,
                             "SELECT ((($1::timestamptz AT TIME ZONE $2)::date + $3::int + 1)"
                             "        ::timestamp AT TIME ZONE $2) - interval '1 second'",
                             3, p, &rc);
    if (!res)
        return rc;
    *out = sc_pq_time(res, 0, 0, SC_TIME_NEVER);
    PQclear(res);
    return 0;
}

/*
 * A deadline as given: an RFC 3339 time as is, a date as the end of that day
 * (23:59:59) in the school's zone. *out stays 0 when `text` is NULL.
 */
static int s_deadline_given(s_op_t *op, const char *text, const char *tz, sc_time_t *out)
{
    int64_t days;
    int rc;
    *out = 0;
    if (!text)
        return 0;
    if (sc_time_parse(text, out) == 0)
        return 0;
    if (sc_date_parse(text, &days) < 0)
        return -EINVAL; /* the validator let it through: cannot happen */
    const char *p[] = {text, tz};
    PGresult *res = ht__exec(op->ctx,
                             "SELECT (($1::date + 1)::timestamp AT TIME ZONE $2)"
                             "       - interval '1 second'",
                             2, p, &rc);
    if (!res)
        return rc;
    *out = sc_pq_time(res, 0, 0, SC_TIME_NEVER);
    PQclear(res);
    return 0;
}

/* Default risk days from the config. */
static int s_default_days(const s_op_t *op, const char *risk)
{
    return strcmp(risk, "major") == 0 ? op->cfg->deadline_days_major
                                      : op->cfg->deadline_days_general;
}

/* A new deadline must not lie before the event that sets it. */
static bool s_deadline_past(s_op_t *op, sc_time_t deadline)
{
    return deadline < op->ev->occurred_at;
}

static int s_reject_past(s_op_t *op, sc_time_t deadline)
{
    char d[SC_TIME_LEN];
    return s_reject(op, "deadline_past", "deadline %s is before the event (%s)",
                    sc_time_format(deadline, d), op->at);
}

/* The text form of a JSON value stored in a text column (funds may be a number). */
static char *s_text(const json_t *v)
{
    if (!v || json_is_null(v))
        return NULL;
    if (json_is_string(v))
        return strdup(json_string_value(v));
    return json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
}

/*
 * Records the 五落实 fields the event carries. On a rectification, `measures`
 * is what was done: it fills the committed measures only when none were
 * committed. A time limit counts as the deadline commitment; the caller moves
 * the deadline itself. Adds what was given to `hist` (borrowed).
 */
static int s_commitments(s_op_t *op, bool rectifying, sc_time_t time_limit, json_t *hist)
{
    static const char *const keys[] = {"measures", "responsible", "funds", "emergency_plan",
                                       "interim_measures"};
    char *v[5] = {NULL};
    char tl[SC_TIME_LEN];
    int rc = -ENOMEM;
    bool any = time_limit != 0;
    for (size_t i = 0; i < 5; i++) {
        const json_t *f = json_object_get(op->ev->data, keys[i]);
        if (!f || json_is_null(f))
            continue;
        if (!(v[i] = s_text(f)))
            goto out;
        any = true;
        json_object_set_new(hist, keys[i], json_string(v[i]));
    }
    rc = 0;
    if (!any)
        goto out;
    if (time_limit)
        json_object_set_new(hist, "time_limit", json_string(sc_time_format(time_limit, tl)));
    const char *p[] = {op->ev->school,
                       op->code,
                       v[0],
                       v[1],
                       v[2],
                       v[3],
                       v[4],
                       time_limit ? tl : NULL,
                       rectifying ? "true" : "false"};
    rc = s_run(op->ctx,
               "UPDATE hazard.hazards SET"
               "  c_measures = CASE WHEN $9::boolean THEN COALESCE(c_measures, $3)"
               "                    ELSE COALESCE($3, c_measures) END,"
               "  c_responsible = COALESCE($4, c_responsible),"
               "  c_funds = COALESCE($5, c_funds),"
               "  c_emergency_plan = COALESCE($6, c_emergency_plan),"
               "  interim_measures = COALESCE($7, interim_measures),"
               "  c_time_limit = COALESCE($8::timestamptz, c_time_limit)"
               " WHERE school = $1 AND hazard = $2",
               9, p);
out:
    for (size_t i = 0; i < 5; i++)
        free(v[i]);
    return rc;
}

/*
 * Moves the deadline of an unrectified hazard. A changed deadline is a new
 * round: its overdue is raised once more and its reminders start again.
 */
static int s_move_deadline(s_op_t *op, sc_time_t deadline)
{
    char d[SC_TIME_LEN];
    const char *p[] = {op->ev->school, op->code, sc_time_format(deadline, d), op->now};
    return s_run(op->ctx,
                 "UPDATE hazard.hazards SET"
                 "  round = round + CASE WHEN deadline <> $3::timestamptz THEN 1 ELSE 0 END,"
                 "  overdue_at = CASE WHEN deadline <> $3::timestamptz THEN NULL"
                 "                    ELSE overdue_at END,"
                 "  next_reminder_at = CASE WHEN deadline <> $3::timestamptz THEN NULL"
                 "                          ELSE next_reminder_at END,"
                 "  reminders_sent = CASE WHEN deadline <> $3::timestamptz THEN 0"
                 "                        ELSE reminders_sent END,"
                 "  deadline = $3, deadline_given = true, c_time_limit = $3, updated_at = $4"
                 " WHERE school = $1 AND hazard = $2",
                 4, p);
}

/* The hazard's round and deadline after the event's updates, for its history row. */
static int s_after(s_op_t *op, int *round, json_t *hist)
{
    const char *p[] = {op->ev->school, op->code};
    int rc;
    PGresult *res = ht__exec(op->ctx,
                             "SELECT round, hazard.rfc3339(deadline) FROM hazard.hazards"
                             " WHERE school = $1 AND hazard = $2",
                             2, p, &rc);
    if (!res)
        return rc;
    *round = atoi(PQgetvalue(res, 0, 0));
    json_object_set_new(hist, "deadline", json_string(PQgetvalue(res, 0, 1)));
    PQclear(res);
    return 0;
}

/* Who did it: data.by when the type has it, else the envelope's actor. */
static const char *s_actor(const s_op_t *op)
{
    const char *by = sc_json_str(op->ev->data, "by");
    return by ? by : op->ev->actor;
}

/* Emits hazard.closed when a hazard reaches an end: closed after verification, or withdrawn. */
static int s_emit_closed(s_op_t *op, const char *outcome, const char *by)
{
    char id[200];
    json_t *data = json_pack("{s:s, s:s, s:s, s:s, s:s?, s:s?}", "hazard", op->code, "outcome",
                             outcome, "risk", s_col(op, C_RISK), "title", s_col(op, C_TITLE), "by",
                             by, "district", s_col(op, C_DISTRICT));
    if (!data)
        return -ENOMEM;
    snprintf(id, sizeof id, "closed:%s:%s", op->ev->school, op->code);
    int rc = sc_emit(op->ctx, &(sc_emit_t){.type = "hazard.closed",
                                           .school = op->ev->school,
                                           .district = s_col(op, C_DISTRICT),
                                           .id = id,
                                           .data = data});
    json_decref(data);
    return rc;
}

/*
 * A report already in the ledger under this code: a resend is a no-op when the
 * data is identical, or when both name the same origin with a task or a ref
 * (the inspection scheduler's stable codes); anything else is refused.
 */
static int s_rereport(s_op_t *op, const json_t *origin)
{
    char *data_s = json_dumps(op->ev->data, JSON_COMPACT);
    char *origin_s = json_dumps(origin, JSON_COMPACT);
    int rc = -ENOMEM;
    PGresult *res = NULL;
    if (!data_s || !origin_s)
        goto out;
    const char *p[] = {op->ev->school, op->code, data_s, origin_s};
    res = ht__exec(op->ctx,
                   "SELECT report_data = $3::jsonb"
                   "       OR (origin = $4::jsonb AND (origin ? 'task' OR origin ? 'ref'))"
                   "  FROM hazard.hazards WHERE school = $1 AND hazard = $2",
                   4, p, &rc);
    if (!res)
        goto out;
    if (PQgetvalue(res, 0, 0)[0] == 't')
        SC_LOG_INFO(op->ctx, "event %" PRId64 ": hazard %s at %s reported again: no change",
                    op->ev->id, op->code, op->ev->school);
    else
        rc = s_reject(op, "duplicate",
                      "hazard %s is already in the ledger of school %s with a different report",
                      op->code, op->ev->school);
out:
    PQclear(res);
    free(data_s);
    free(origin_s);
    return rc;
}

/* The school's time zone from the directory, or the daemon's default. New string (free). */
static char *s_timezone(s_op_t *op)
{
    json_t *school = op->ctx->host->school(op->ctx, op->ev->school);
    const char *tz = sc_json_str(school, "timezone");
    char *out = strdup(tz && *tz ? tz : op->ctx->host->default_timezone(op->ctx));
    json_decref(school);
    return out;
}

/* Tells the district at once about a major hazard (hazard.major.reported). */
static int s_emit_major(s_op_t *op, const char *reporter, sc_time_t found_at, sc_time_t deadline,
                        const json_t *origin)
{
    const char *p[] = {op->ev->school, op->code};
    char id[200], found_s[SC_TIME_LEN], deadline_s[SC_TIME_LEN];
    int rc;
    json_t *data = NULL;
    PGresult *res = ht__exec(op->ctx,
                             "SELECT hazard.missing(h), district, interim_measures"
                             "  FROM hazard.hazards h WHERE school = $1 AND hazard = $2",
                             2, p, &rc);
    if (!res)
        return rc;
    const json_t *d = op->ev->data;
    const char *district = PQgetisnull(res, 0, 1) ? NULL : PQgetvalue(res, 0, 1);
    data = json_pack("{s:s, s:s, s:s, s:s, s:s?, s:s?, s:s?, s:s?, s:s, s:s, s:o, s:O, s:o}",
                     "hazard", op->code, "title", sc_json_str(d, "title"), "risk", "major",
                     "school", op->ev->school, "district", district, "location",
                     sc_json_str(d, "location"), "category", sc_json_str(d, "category"), "reporter",
                     reporter, "found_at", sc_time_format(found_at, found_s), "deadline",
                     sc_time_format(deadline, deadline_s), "missing", sc_pq_value(res, 0, 0),
                     "origin", origin, "interim_measures", sc_pq_value(res, 0, 2));
    if (!data) {
        rc = -ENOMEM;
        goto out;
    }
    if (!sc_json_str(data, "category"))
        json_object_set_new(data, "category", json_string("other"));
    snprintf(id, sizeof id, "major:%s:%s", op->ev->school, op->code);
    rc = sc_emit(op->ctx, &(sc_emit_t){.type = "hazard.major.reported",
                                       .school = op->ev->school,
                                       .district = district,
                                       .id = id,
                                       .occurred_at = op->ev->occurred_at,
                                       .data = data});
out:
    json_decref(data);
    PQclear(res);
    return rc;
}

/* hazard.reported: a new hazard enters the ledger with its deadline. */
static int s_reported(s_op_t *op)
{
    const json_t *d = op->ev->data;
    const char *risk = sc_json_str(d, "risk");
    const char *category = sc_json_str(d, "category");
    const char *reporter = sc_json_str(d, "reporter");
    json_t *origin = ht__origin_normal(json_object_get(d, "origin"));
    json_t *hist = NULL;
    char *tz = NULL, *origin_s = NULL, *attach_s = NULL, *data_s = NULL;
    char found_s[SC_TIME_LEN], deadline_s[SC_TIME_LEN], limit_s[SC_TIME_LEN];
    sc_time_t deadline = 0, time_limit = 0;
    int rc = -ENOMEM;

    if (!reporter)
        reporter = op->ev->actor;
    if (!origin)
        goto out;
    if (op->row) {
        rc = s_rereport(op, origin);
        goto out;
    }
    if (!(tz = s_timezone(op)))
        goto out;
    sc_time_t found_at = sc_json_time(d, "found_at", op->ev->occurred_at);
    if ((rc = s_deadline_given(op, sc_json_str(d, "deadline"), tz, &deadline)) < 0 ||
        (rc = s_deadline_given(op, sc_json_str(d, "time_limit"), tz, &time_limit)) < 0)
        goto out;
    bool given = deadline || time_limit;
    if (!deadline)
        deadline = time_limit;
    /* The time-limit commitment: the one given, else an explicit deadline. */
    if (!time_limit)
        time_limit = deadline;
    if (given && s_deadline_past(op, deadline)) {
        rc = s_reject_past(op, deadline);
        goto out;
    }
    if (!given && (rc = s_deadline_default(op, op->ev->occurred_at, s_default_days(op, risk), tz,
                                           &deadline)) < 0)
        goto out;

    rc = -ENOMEM;
    const json_t *attachments = json_object_get(d, "attachments");
    origin_s = json_dumps(origin, JSON_COMPACT);
    attach_s = attachments ? json_dumps(attachments, JSON_COMPACT) : strdup("[]");
    data_s = json_dumps(d, JSON_COMPACT);
    if (!origin_s || !attach_s || !data_s)
        goto out;
    const char *p[] = {op->ev->school,
                       op->code,
                       op->ev->district,
                       tz,
                       sc_json_str(d, "title"),
                       sc_json_str(d, "description"),
                       sc_json_str(d, "location"),
                       category ? category : "other",
                       risk,
                       reporter,
                       sc_time_format(found_at, found_s),
                       op->at,
                       origin_s,
                       attach_s,
                       op->evid,
                       data_s,
                       sc_time_format(deadline, deadline_s),
                       given ? "true" : "false",
                       op->now,
                       time_limit ? sc_time_format(time_limit, limit_s) : NULL};
    if ((rc = s_run(op->ctx,
                    "INSERT INTO hazard.hazards (school, hazard, district, timezone, title,"
                    "  description, location, category, risk, reporter, found_at, reported_at,"
                    "  origin, attachments, report_event, report_data, state, deadline,"
                    "  deadline_given, c_time_limit, updated_at)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,"
                    "  $16, 'reported', $17, $18, $20, $19)",
                    20, p)) < 0)
        goto out;
    rc = -ENOMEM;
    if (!(hist = json_pack("{s:s, s:s, s:s, s:s?, s:O, s:s, s:b}", "title", sc_json_str(d, "title"),
                           "risk", risk, "category", category ? category : "other", "location",
                           sc_json_str(d, "location"), "origin", origin, "deadline", deadline_s,
                           "deadline_given", given)))
        goto out;
    if ((rc = s_commitments(op, false, 0, hist)) < 0 ||
        (rc = ht__history(op->ctx, op->ev->school, op->code, op->ev->occurred_at, op->ev->id,
                          "reported", NULL, "reported", reporter, 1, hist)) < 0)
        goto out;
    if (strcmp(risk, "major") == 0 && op->cfg->report_major_to_district)
        rc = s_emit_major(op, reporter, found_at, deadline, origin);
out:
    json_decref(origin);
    json_decref(hist);
    free(tz);
    free(origin_s);
    free(attach_s);
    free(data_s);
    return rc;
}

/*
 * Reads the explicit deadline an event carries (data.deadline, else
 * data.time_limit) in the hazard's zone; 0 when none. Only the fields the
 * type's validator checks are read: `with_deadline`, `with_time_limit`.
 */
static int s_explicit(s_op_t *op, bool with_deadline, bool with_time_limit, sc_time_t *deadline,
                      sc_time_t *time_limit)
{
    const char *tz = s_col(op, C_TIMEZONE);
    const json_t *d = op->ev->data;
    int rc;
    if ((rc = s_deadline_given(op, with_deadline ? sc_json_str(d, "deadline") : NULL, tz,
                               deadline)) < 0 ||
        (rc = s_deadline_given(op, with_time_limit ? sc_json_str(d, "time_limit") : NULL, tz,
                               time_limit)) < 0)
        return rc;
    if (!*deadline)
        *deadline = *time_limit;
    return 0;
}

/* hazard.assigned: someone is to rectify it, by the deadline given or the one in force. */
static int s_assigned(s_op_t *op)
{
    const json_t *d = op->ev->data;
    const char *assignee = sc_json_str(d, "assignee");
    sc_time_t deadline, time_limit;
    json_t *hist = NULL;
    int round, rc;

    if (!op->row)
        return s_reject_unknown(op);
    if (!s_is(op, "reported") && !s_is(op, "assigned"))
        return s_reject_state(op, "reported or assigned");
    if ((rc = s_explicit(op, true, true, &deadline, &time_limit)) < 0)
        return rc;
    if (deadline && s_deadline_past(op, deadline))
        return s_reject_past(op, deadline);

    const char *from = s_col(op, C_STATE);
    const char *p[] = {op->ev->school, op->code, assignee, op->ev->actor, op->at, op->now};
    if ((rc = s_run(op->ctx,
                    "UPDATE hazard.hazards SET state = 'assigned', assignee = $3,"
                    "  assigned_by = $4, assigned_at = $5, updated_at = $6"
                    " WHERE school = $1 AND hazard = $2",
                    6, p)) < 0 ||
        (deadline && (rc = s_move_deadline(op, deadline)) < 0))
        return rc;
    rc = -ENOMEM;
    if (!(hist = json_pack("{s:s, s:s?, s:s?}", "assignee", assignee, "previous",
                           s_col(op, C_ASSIGNEE), "note", sc_json_str(d, "note"))))
        goto out;
    if (deadline)
        json_object_set_new(hist, "deadline_given", json_true());
    if ((rc = s_commitments(op, false, time_limit, hist)) < 0 ||
        (rc = s_after(op, &round, hist)) < 0)
        goto out;
    rc = ht__history(op->ctx, op->ev->school, op->code, op->ev->occurred_at, op->ev->id,
                     strcmp(from, "assigned") == 0 ? "reassigned" : "assigned", from, "assigned",
                     op->ev->actor, round, hist);
out:
    json_decref(hist);
    return rc;
}

/* hazard.rectified: the assignee reports the hazard removed; verification is next. */
static int s_rectified(s_op_t *op)
{
    const json_t *d = op->ev->data;
    const json_t *evidence = json_object_get(d, "evidence");
    sc_time_t deadline, time_limit;
    char *evidence_s = NULL;
    json_t *hist = NULL;
    int round, rc;

    if (!op->row)
        return s_reject_unknown(op);
    if (!s_is(op, "assigned"))
        return s_reject_state(op, "assigned");
    if ((rc = s_explicit(op, false, true, &deadline, &time_limit)) < 0)
        return rc;
    sc_time_t due = sc_pq_time(op->row, 0, C_DEADLINE, SC_TIME_NEVER);
    bool on_time = op->ev->occurred_at <= due;

    rc = -ENOMEM;
    if (evidence && !(evidence_s = json_dumps(evidence, JSON_COMPACT)))
        goto out;
    const char *p[] = {
        op->ev->school, op->code, sc_json_str(d, "by"), op->at, sc_json_str(d, "measures"),
        evidence_s,     op->now};
    if ((rc = s_run(op->ctx,
                    "UPDATE hazard.hazards SET state = 'rectified', rectified_by = $3,"
                    "  rectified_at = $4, measures = $5, evidence = $6::jsonb,"
                    "  next_reminder_at = NULL, updated_at = $7"
                    " WHERE school = $1 AND hazard = $2",
                    7, p)) < 0)
        goto out;
    rc = -ENOMEM;
    if (!(hist = json_pack("{s:s, s:s, s:b, s:s?}", "by", sc_json_str(d, "by"), "measures",
                           sc_json_str(d, "measures"), "on_time", on_time, "note",
                           sc_json_str(d, "note"))))
        goto out;
    if (evidence)
        json_object_set(hist, "evidence", (json_t *)evidence);
    if ((rc = s_commitments(op, true, time_limit, hist)) < 0 ||
        (rc = s_after(op, &round, hist)) < 0)
        goto out;
    rc = ht__history(op->ctx, op->ev->school, op->code, op->ev->occurred_at, op->ev->id,
                     "rectified", "assigned", "rectified", s_actor(op), round, hist);
out:
    free(evidence_s);
    json_decref(hist);
    return rc;
}

/* hazard.verified passed: closes the hazard, once the 五落实 of a major one are complete. */
static int s_verified_passed(s_op_t *op)
{
    const json_t *d = op->ev->data;
    const char *by = sc_json_str(d, "by");
    json_t *missing = NULL, *hist = NULL;
    int rc = -ENOMEM;

    if (strcmp(s_col(op, C_RISK), "major") == 0 && op->cfg->require_commitments) {
        missing = json_loads(s_col(op, C_MISSING), 0, NULL);
        if (!missing)
            goto out;
        if (json_array_size(missing) > 0) {
            char list[200] = "";
            size_t i, off = 0;
            const json_t *m;
            json_array_foreach(missing, i, m) off +=
                (size_t)snprintf(list + off, off < sizeof list ? sizeof list - off : 0, "%s%s",
                                 i ? ", " : "", json_string_value(m));
            rc = s_reject(op, "commitments_missing",
                          "major hazard %s cannot be closed: 五落实 missing %s", op->code, list);
            goto out;
        }
    }
    const char *p[] = {op->ev->school, op->code, by, op->at, op->now};
    if ((rc = s_run(op->ctx,
                    "UPDATE hazard.hazards SET state = 'closed', verified_by = $3,"
                    "  verified_at = $4, closed_at = $4, updated_at = $5"
                    " WHERE school = $1 AND hazard = $2",
                    5, p)) < 0)
        goto out;
    rc = -ENOMEM;
    if (!(hist =
              json_pack("{s:s, s:b, s:s?}", "by", by, "passed", 1, "note", sc_json_str(d, "note"))))
        goto out;
    if ((rc = ht__history(op->ctx, op->ev->school, op->code, op->ev->occurred_at, op->ev->id,
                          "verified", "rectified", "closed", by, atoi(s_col(op, C_ROUND)), hist)) <
        0)
        goto out;
    rc = s_emit_closed(op, "closed", by);
out:
    json_decref(missing);
    json_decref(hist);
    return rc;
}

/* hazard.verified not passed: the hazard is reopened with a new deadline (a new round). */
static int s_verified_failed(s_op_t *op)
{
    const json_t *d = op->ev->data;
    const char *by = sc_json_str(d, "by");
    sc_time_t deadline, unused;
    char deadline_s[SC_TIME_LEN];
    json_t *hist = NULL;
    int round, rc;

    if ((rc = s_explicit(op, true, false, &deadline, &unused)) < 0)
        return rc;
    bool given = deadline != 0;
    if (given && s_deadline_past(op, deadline))
        return s_reject_past(op, deadline);
    if (!given &&
        (rc = s_deadline_default(op, op->ev->occurred_at, s_default_days(op, s_col(op, C_RISK)),
                                 s_col(op, C_TIMEZONE), &deadline)) < 0)
        return rc;
    const char *p[] = {
        op->ev->school,           op->code, by, op->at, sc_time_format(deadline, deadline_s),
        given ? "true" : "false", op->now};
    if ((rc = s_run(op->ctx,
                    "UPDATE hazard.hazards SET state = 'assigned', verified_by = $3,"
                    "  verified_at = $4, rectified_by = NULL, rectified_at = NULL,"
                    "  round = round + 1, deadline = $5, deadline_given = $6::boolean,"
                    "  c_time_limit = CASE WHEN $6::boolean THEN $5::timestamptz"
                    "                      ELSE c_time_limit END,"
                    "  overdue_at = NULL, next_reminder_at = NULL, reminders_sent = 0,"
                    "  updated_at = $7"
                    " WHERE school = $1 AND hazard = $2",
                    7, p)) < 0)
        return rc;
    rc = -ENOMEM;
    if (!(hist = json_pack("{s:s, s:b, s:s?, s:s?}", "by", by, "passed", 0, "note",
                           sc_json_str(d, "note"), "rectified_by", s_col(op, C_RECTIFIED_BY))))
        goto out;
    if ((rc = s_after(op, &round, hist)) < 0)
        goto out;
    rc = ht__history(op->ctx, op->ev->school, op->code, op->ev->occurred_at, op->ev->id, "reopened",
                     "rectified", "assigned", by, round, hist);
out:
    json_decref(hist);
    return rc;
}

/* hazard.verified: someone other than the rectifier checks the work. */
static int s_verified(s_op_t *op)
{
    const char *by = sc_json_str(op->ev->data, "by");
    const char *rectifier;
    if (!op->row)
        return s_reject_unknown(op);
    if (!s_is(op, "rectified"))
        return s_reject_state(op, "rectified");
    rectifier = s_col(op, C_RECTIFIED_BY);
    if (op->cfg->verifier_must_differ && rectifier && strcmp(by, rectifier) == 0)
        return s_reject(op, "same_person",
                        "hazard %s was rectified by %s, who cannot also verify it", op->code, by);
    return sc_json_bool(op->ev->data, "passed", false) ? s_verified_passed(op)
                                                       : s_verified_failed(op);
}

/* hazard.withdrawn: a wrong report ends here, kept with its reason. */
static int s_withdrawn(s_op_t *op)
{
    const json_t *d = op->ev->data;
    const char *by = sc_json_str(d, "by");
    json_t *hist = NULL;
    int rc;
    if (!op->row)
        return s_reject_unknown(op);
    if (s_is(op, "closed") || s_is(op, "withdrawn"))
        return s_reject_state(op, "reported, assigned or rectified");
    const char *from = s_col(op, C_STATE);
    const char *p[] = {op->ev->school, op->code, by, op->at, sc_json_str(d, "reason"), op->now};
    if ((rc = s_run(op->ctx,
                    "UPDATE hazard.hazards SET state = 'withdrawn', withdrawn_by = $3,"
                    "  withdrawn_at = $4, withdrawn_reason = $5, next_reminder_at = NULL,"
                    "  updated_at = $6"
                    " WHERE school = $1 AND hazard = $2",
                    6, p)) < 0)
        return rc;
    if (!(hist = json_pack("{s:s, s:s}", "by", by, "reason", sc_json_str(d, "reason"))))
        return -ENOMEM;
    if ((rc = ht__history(op->ctx, op->ev->school, op->code, op->ev->occurred_at, op->ev->id,
                          "withdrawn", from, "withdrawn", by, atoi(s_col(op, C_ROUND)), hist)) == 0)
        rc = s_emit_closed(op, "withdrawn", by);
    json_decref(hist);
    return rc;
}

/* hazard.commitments: records 五落实 fields; a time limit moves an unrectified hazard's deadline.
 */
static int s_commitments_event(s_op_t *op)
{
    sc_time_t deadline, time_limit;
    json_t *hist = NULL;
    int round, rc;
    if (!op->row)
        return s_reject_unknown(op);
    if (s_is(op, "closed") || s_is(op, "withdrawn"))
        return s_reject_state(op, "reported, assigned or rectified");
    if ((rc = s_explicit(op, false, true, &deadline, &time_limit)) < 0)
        return rc;
    bool moves = time_limit && (s_is(op, "reported") || s_is(op, "assigned"));
    if (moves && s_deadline_past(op, time_limit))
        return s_reject_past(op, time_limit);
    if (moves && (rc = s_move_deadline(op, time_limit)) < 0)
        return rc;
    if (!(hist = json_object()))
        return -ENOMEM;
    if ((rc = s_commitments(op, false, time_limit, hist)) < 0 ||
        (rc = s_after(op, &round, hist)) < 0)
        goto out;
    rc = ht__history(op->ctx, op->ev->school, op->code, op->ev->occurred_at, op->ev->id,
                     "commitments", s_col(op, C_STATE), s_col(op, C_STATE), s_actor(op), round,
                     hist);
out:
    json_decref(hist);
    return rc;
}

static const struct {
    const char *type;
    sc_validate_fn validate;
    int (*apply)(s_op_t *op);
} s_ops[] = {
    {"hazard.reported", ht__validate_reported, s_reported},
    {"hazard.assigned", ht__validate_assigned, s_assigned},
    {"hazard.rectified", ht__validate_rectified, s_rectified},
    {"hazard.verified", ht__validate_verified, s_verified},
    {"hazard.withdrawn", ht__validate_withdrawn, s_withdrawn},
    {"hazard.commitments", ht__validate_commitments, s_commitments_event},
};

int ht__handle(sc_ctx_t *ctx, const ht_config_t *cfg, const sc_event_t *ev)
{
    s_op_t op = {.ctx = ctx, .cfg = cfg, .ev = ev, .code = sc_json_str(ev->data, "hazard")};
    int (*apply)(s_op_t *) = NULL;
    sc_validate_fn validate = NULL;
    char detail[256];
    int rc;

    for (size_t i = 0; i < sizeof s_ops / sizeof s_ops[0]; i++)
        if (strcmp(ev->type, s_ops[i].type) == 0) {
            apply = s_ops[i].apply;
            validate = s_ops[i].validate;
        }
    if (!apply)
        return 0; /* what this plugin raised itself, or a type it does not act on */
    sc_time_format(ev->occurred_at, op.at);
    sc_time_format(sc_now(ctx), op.now);
    snprintf(op.evid, sizeof op.evid, "%" PRId64, ev->id);
    if (!ev->school)
        return s_reject(&op, "no_school", "%s needs a school", ev->type);
    /* Ingest checked it already; checked again so nothing unchecked ever reaches the ledger. */
    if (validate(ev, detail, sizeof detail) < 0)
        return s_reject(&op, "invalid", "%s", detail);
    if ((rc = s_load(&op)) < 0)
        return rc;
    rc = apply(&op);
    PQclear(op.row);
    return rc;
}
