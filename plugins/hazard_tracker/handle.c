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
    ht_state_t *st;
    const ht_config_t *cfg;
    const sc_event_t *ev;
    const char *code;     /* data.hazard (borrowed from the event) */
    PGresult *row;        /* the hazard, locked; NULL when it does not exist (or, for a
                             report, was not read: its insert finds a taken code itself) */
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

/*
 * A statement of the handle path, prepared once per connection by ht__prepare():
 * hazard events come by the thousand, and parsing and planning the same few
 * statements for each of them was most of what the database did for them.
 */
typedef struct s_stmt {
    const char *name;
    const char *sql;
} s_stmt_t;

/* Runs a prepared statement: like ht__exec(). */
static PGresult *s_exec(sc_ctx_t *ctx, const s_stmt_t *st, int n, const char *const *params,
                        int *rc)
{
    PGconn *conn = sc_db(ctx);
    PGresult *res = PQexecPrepared(conn, st->name, n, params, NULL, NULL, 0);
    ExecStatusType status = PQresultStatus(res);
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) {
        *rc = 0;
        return res;
    }
    *rc = sc_pq_error(conn, res);
    SC_LOG_ERR(ctx, "statement %s failed: %s", st->name, PQerrorMessage(conn));
    PQclear(res);
    return NULL;
}

/* Runs a prepared statement whose result is not needed. */
static int s_run(sc_ctx_t *ctx, const s_stmt_t *st, int n, const char *const *params)
{
    int rc;
    PGresult *res = s_exec(ctx, st, n, params, &rc);
    PQclear(res);
    return rc;
}

static const s_stmt_t s_history_stmt = {
    "ht_history", "INSERT INTO hazard.history (school, hazard, at, recorded_at, event, action,"
                  "  state_from, state_to, actor, round, data)"
                  " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"};

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
    rc = s_run(ctx, &s_history_stmt, 11, p);
    free(data_s);
    return rc;
}

/*
 * The history row of an event that may have moved the deadline: its round and
 * data.deadline are the hazard's as the event's updates left them, read by the
 * insert itself rather than in a round trip of their own. `data` is borrowed.
 */
static const s_stmt_t s_history_after_stmt = {
    "ht_history_after",
    "INSERT INTO hazard.history (school, hazard, at, recorded_at, event, action, state_from,"
    "  state_to, actor, round, data)"
    " SELECT school, hazard, $3::timestamptz, $4::timestamptz, $5::bigint, $6::text, $7::text,"
    "        $8::text, $9::text, round,"
    "        $10::jsonb || jsonb_build_object('deadline', hazard.rfc3339(deadline))"
    "   FROM hazard.hazards WHERE school = $1 AND hazard = $2"};

static const char *s_col(const s_op_t *op, int col)
{
    return PQgetisnull(op->row, 0, col) ? NULL : PQgetvalue(op->row, 0, col);
}

static bool s_is(const s_op_t *op, const char *state)
{
    return strcmp(s_col(op, C_STATE), state) == 0;
}

static const s_stmt_t s_load_stmt = {"ht_load",
                                     "SELECT state, risk, rectified_by, round, deadline, timezone,"
                                     "       district, title, hazard.missing(h), assignee"
                                     "  FROM hazard.hazards h WHERE school = $1 AND hazard = $2"
                                     "   FOR UPDATE"};

/* Reads and locks the hazard the event names; op->row stays NULL when there is none. */
static int s_load(s_op_t *op)
{
    const char *p[] = {op->ev->school, op->code};
    int rc;
    PGresult *res = s_exec(op->ctx, &s_load_stmt, 2, p, &rc);
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

static const s_stmt_t s_deadline_default_stmt = {
    "ht_deadline_default", "SELECT ((($1::timestamptz AT TIME ZONE $2)::date + $3::int + 1)"
                           "        ::timestamp AT TIME ZONE $2) - interval '1 second'"};

/* The default deadline: the end (23:59:59 local) of the day `days` after `from` at the school. */
static int s_deadline_default(s_op_t *op, sc_time_t from, int days, const char *tz, sc_time_t *out)
{
    char from_s[SC_TIME_LEN], days_s[16];
    int rc;
    snprintf(days_s, sizeof days_s, "%d", days);
    const char *p[] = {sc_time_format(from, from_s), tz, days_s};
    PGresult *res = s_exec(op->ctx, &s_deadline_default_stmt, 3, p, &rc);
    if (!res)
        return rc;
    *out = sc_pq_time(res, 0, 0, SC_TIME_NEVER);
    PQclear(res);
    return 0;
}

static const s_stmt_t s_deadline_date_stmt = {
    "ht_deadline_date", "SELECT (($1::date + 1)::timestamp AT TIME ZONE $2) - interval '1 second'"};

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
    PGresult *res = s_exec(op->ctx, &s_deadline_date_stmt, 2, p, &rc);
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

/* The 五落实 text fields an event may carry, in the order of s_commitments_read(). */
enum { K_MEASURES, K_RESPONSIBLE, K_FUNDS, K_EMERGENCY_PLAN, K_INTERIM_MEASURES, K_COUNT };

/*
 * Reads the 五落实 text fields the event carries into v (new strings, NULL when
 * absent; the caller frees them, also on failure) and adds them to `hist`
 * (borrowed) unless it is NULL. *any tells whether there was one. Returns 0 or
 * -ENOMEM.
 */
static int s_commitments_read(const s_op_t *op, char *v[K_COUNT], json_t *hist, bool *any)
{
    static const char *const keys[K_COUNT] = {"measures", "responsible", "funds", "emergency_plan",
                                              "interim_measures"};
    *any = false;
    for (size_t i = 0; i < K_COUNT; i++) {
        const json_t *f = json_object_get(op->ev->data, keys[i]);
        if (!f || json_is_null(f))
            continue;
        if (!(v[i] = s_text(f)))
            return -ENOMEM;
        *any = true;
        if (hist)
            json_object_set_new(hist, keys[i], json_string(v[i]));
    }
    return 0;
}

static const s_stmt_t s_commitments_stmt = {
    "ht_commitments", "UPDATE hazard.hazards SET"
                      "  c_measures = CASE WHEN $9::boolean THEN COALESCE(c_measures, $3)"
                      "                    ELSE COALESCE($3, c_measures) END,"
                      "  c_responsible = COALESCE($4, c_responsible),"
                      "  c_funds = COALESCE($5, c_funds),"
                      "  c_emergency_plan = COALESCE($6, c_emergency_plan),"
                      "  interim_measures = COALESCE($7, interim_measures),"
                      "  c_time_limit = COALESCE($8::timestamptz, c_time_limit)"
                      " WHERE school = $1 AND hazard = $2"};

/*
 * Records the 五落实 fields the event carries. On a rectification, `measures`
 * is what was done: it fills the committed measures only when none were
 * committed. A time limit counts as the deadline commitment; the caller moves
 * the deadline itself. Adds what was given to `hist` (borrowed).
 */
static int s_commitments(s_op_t *op, bool rectifying, sc_time_t time_limit, json_t *hist)
{
    char *v[K_COUNT] = {NULL};
    char tl[SC_TIME_LEN];
    bool any;
    int rc = s_commitments_read(op, v, hist, &any);
    if (rc < 0 || (!any && !time_limit))
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
    rc = s_run(op->ctx, &s_commitments_stmt, 9, p);
out:
    for (size_t i = 0; i < K_COUNT; i++)
        free(v[i]);
    return rc;
}

static const s_stmt_t s_move_deadline_stmt = {
    "ht_move_deadline", "UPDATE hazard.hazards SET"
                        "  round = round + CASE WHEN deadline <> $3::timestamptz THEN 1 ELSE 0 END,"
                        "  overdue_at = CASE WHEN deadline <> $3::timestamptz THEN NULL"
                        "                    ELSE overdue_at END,"
                        "  next_reminder_at = CASE WHEN deadline <> $3::timestamptz THEN NULL"
                        "                          ELSE next_reminder_at END,"
                        "  reminders_sent = CASE WHEN deadline <> $3::timestamptz THEN 0"
                        "                        ELSE reminders_sent END,"
                        "  deadline = $3, deadline_given = true, c_time_limit = $3, updated_at = $4"
                        " WHERE school = $1 AND hazard = $2"};

/*
 * Moves the deadline of an unrectified hazard. A changed deadline is a new
 * round: its overdue is raised once more and its reminders start again.
 */
static int s_move_deadline(s_op_t *op, sc_time_t deadline)
{
    char d[SC_TIME_LEN];
    const char *p[] = {op->ev->school, op->code, sc_time_format(deadline, d), op->now};
    return s_run(op->ctx, &s_move_deadline_stmt, 4, p);
}

/*
 * Writes the event's history row with the hazard's round and deadline as the
 * event's updates left them (data.deadline). `hist` is borrowed.
 */
static int s_history_after(s_op_t *op, const char *action, const char *from, const char *to,
                           const char *actor, const json_t *hist)
{
    char *data_s = json_dumps(hist, JSON_COMPACT);
    if (!data_s)
        return -ENOMEM;
    const char *p[] = {op->ev->school, op->code, op->at, op->now, op->ev->id ? op->evid : NULL,
                       action,         from,     to,     actor,   data_s};
    int rc = s_run(op->ctx, &s_history_after_stmt, 10, p);
    free(data_s);
    return rc;
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

/* The school's time zone from the directory, or the daemon's default. New string (free). */
static char *s_timezone(s_op_t *op)
{
    json_t *school = op->ctx->host->school(op->ctx, op->ev->school);
    const char *tz = sc_json_str(school, "timezone");
    char *out = strdup(tz && *tz ? tz : op->ctx->host->default_timezone(op->ctx));
    json_decref(school);
    return out;
}

/*
 * Reports, one statement for many: for each, the deadline given (dates read as
 * the end of that day in the school's zone) or else the risk's default; and,
 * unless the deadline given lies before the event, the hazard with its
 * "reported" history row. The primary key's own check (ON CONFLICT) finds a
 * code already taken, so no look-up of ours precedes the insert. Returns a row
 * (R_*) per report, in the order given; when nothing was inserted,
 * s_rereport_stmt tells a taken code from a past deadline.
 *
 * $1 the reports as JSON rows (see s_reported; no two of one school and code),
 * each with: the school, hazard, district, time zone; reporter, found_at; `at`
 * the event's occurred_at; origin (normalised), the event and its data (title,
 * description, location, category, risk and attachments are read from it);
 * data.deadline as deadline_time or deadline_date, data.time_limit as
 * limit_time or limit_date; the default days; now; the 五落实 texts (K_*).
 */
static const s_stmt_t s_report_stmt = {
    "ht_report",
    /* The event's data is read as json and cast once (x): the fields of the hazard and of
     * its history come from it, not again from the row. */
    "WITH i AS (SELECT r.ord, r.school, r.hazard, r.district, r.tz, x.d->>'title' AS title,"
    "   x.d->>'description' AS description, x.d->>'location' AS location,"
    "   coalesce(x.d->>'category', 'other') AS category, x.d->>'risk' AS risk, r.reporter,"
    "   r.found_at, r.at, r.origin::jsonb AS origin,"
    "   coalesce(x.d->'attachments', '[]') AS attachments, r.event, x.d AS data,"
    "   r.deadline_time, r.deadline_date, r.limit_time, r.limit_date, r.days, r.now, r.measures,"
    "   r.responsible, r.funds, r.emergency_plan, r.interim_measures"
    "  FROM json_to_recordset($1::json) AS r(ord int, school text, hazard text, district text,"
    "   tz text, reporter text, found_at timestamptz, at timestamptz, origin json,"
    "   event bigint, data json, deadline_time timestamptz, deadline_date date,"
    "   limit_time timestamptz, limit_date date, days int, now timestamptz, measures text,"
    "   responsible text, funds text, emergency_plan text, interim_measures text)"
    "  CROSS JOIN LATERAL (SELECT r.data::jsonb AS d OFFSET 0) x),"
    " given AS ("
    "  SELECT i.ord, coalesce(x.d, x.t) AS deadline, coalesce(x.t, x.d) AS time_limit"
    "    FROM i, LATERAL (SELECT coalesce(i.deadline_time, ((i.deadline_date + 1)::timestamp"
    "                       AT TIME ZONE i.tz) - interval '1 second') AS d,"
    "                     coalesce(i.limit_time, ((i.limit_date + 1)::timestamp"
    "                       AT TIME ZONE i.tz) - interval '1 second') AS t) x),"
    " fresh AS ("
    "  SELECT i.*, coalesce(g.deadline, ((((i.at AT TIME ZONE i.tz)::date + i.days + 1)"
    "                       ::timestamp AT TIME ZONE i.tz) - interval '1 second'))"
    "           AS f_deadline,"
    "         g.deadline IS NOT NULL AS f_given, g.time_limit AS f_time_limit"
    "    FROM i JOIN given g ON g.ord = i.ord WHERE NOT coalesce(g.deadline < i.at, false)),"
    " ins AS ("
    "  INSERT INTO hazard.hazards AS h (school, hazard, district, timezone, title, description,"
    "    location, category, risk, reporter, found_at, reported_at, origin, attachments,"
    "    report_event, report_data, state, deadline, deadline_given, c_time_limit, c_measures,"
    "    c_responsible, c_funds, c_emergency_plan, interim_measures, updated_at)"
    "  SELECT f.school, f.hazard, f.district, f.tz, f.title, f.description, f.location,"
    "         f.category, f.risk, f.reporter, f.found_at, f.at, f.origin, f.attachments,"
    "         f.event, f.data, 'reported', f.f_deadline, f.f_given, f.f_time_limit, f.measures,"
    "         f.responsible, f.funds, f.emergency_plan, f.interim_measures, f.now"
    "    FROM fresh f ORDER BY f.ord"
    "  ON CONFLICT (school, hazard) DO NOTHING"
    "  RETURNING h.school, h.hazard, h.deadline,"
    "            CASE WHEN h.risk = 'major' THEN hazard.missing(h) END AS missing, h.district,"
    "            h.interim_measures),"
    /* The history's data: what was reported, the 五落实 given, the deadline. */
    " hist AS ("
    "  INSERT INTO hazard.history (school, hazard, at, recorded_at, event, action, state_from,"
    "    state_to, actor, round, data)"
    "  SELECT f.school, f.hazard, f.at, f.now, f.event, 'reported', NULL, 'reported',"
    "         f.reporter, 1, jsonb_build_object('title', f.title, 'risk', f.risk,"
    "           'category', f.category, 'location', f.location, 'origin', f.origin,"
    "           'deadline_given', f.f_given, 'deadline', hazard.rfc3339(n.deadline))"
    "         || jsonb_strip_nulls(jsonb_build_object("
    "           'measures', f.measures, 'responsible', f.responsible, 'funds', f.funds,"
    "           'emergency_plan', f.emergency_plan, 'interim_measures', f.interim_measures))"
    "    FROM ins n JOIN fresh f ON f.school = n.school AND f.hazard = n.hazard ORDER BY f.ord)"
    " SELECT g.deadline, n.deadline, n.missing, n.district, n.interim_measures"
    "   FROM i JOIN given g ON g.ord = i.ord"
    "   LEFT JOIN ins n ON n.school = i.school AND n.hazard = i.hazard ORDER BY i.ord"};

/* Columns of the row s_report_stmt returns. */
enum {
    R_GIVEN,    /* the deadline given, NULL if none */
    R_DEADLINE, /* the new hazard's deadline; NULL when nothing was written */
    R_MISSING, /* a new major hazard's missing 五落实; the new one's district and interim measures
                */
    R_DISTRICT,
    R_INTERIM,
};

/*
 * A report under a code already in the ledger: whether it is a resend, which
 * is a no-op (identical data, or the same origin with a task or a ref: the
 * inspection scheduler's stable codes). No row: the code is free.
 */
static const s_stmt_t s_rereport_stmt = {
    "ht_rereport", "SELECT report_data = $3::jsonb"
                   "       OR (origin = $4::jsonb AND (origin ? 'task' OR origin ? 'ref'))"
                   "  FROM hazard.hazards WHERE school = $1 AND hazard = $2"};

/*
 * A deadline field of a report as s_report_stmt takes it: an RFC 3339 time in
 * *time (formatted into buf), a date in *date; both NULL when absent. As
 * everywhere in this file, the instant 0 stands for "none".
 */
static int s_deadline_param(const char *text, char buf[SC_TIME_LEN], const char **time,
                            const char **date)
{
    sc_time_t t;
    int64_t days;
    *time = *date = NULL;
    if (!text)
        return 0;
    if (sc_time_parse(text, &t) == 0) {
        *time = t ? sc_time_format(t, buf) : NULL;
        return 0;
    }
    if (sc_date_parse(text, &days) < 0)
        return -EINVAL; /* the validator let it through: cannot happen */
    *date = text;
    return 0;
}

/*
 * Tells the district at once about a major hazard (hazard.major.reported);
 * its missing 五落实, district and interim measures are those of row r of
 * `res`, the answer of s_report_stmt.
 */
static int s_emit_major(s_op_t *op, const char *reporter, sc_time_t found_at, sc_time_t deadline,
                        const json_t *origin, const PGresult *res, int r)
{
    char id[200], found_s[SC_TIME_LEN], deadline_s[SC_TIME_LEN];
    int rc;
    const json_t *d = op->ev->data;
    const char *district = PQgetisnull(res, r, R_DISTRICT) ? NULL : PQgetvalue(res, r, R_DISTRICT);
    json_t *data = json_pack(
        "{s:s, s:s, s:s, s:s, s:s?, s:s?, s:s?, s:s?, s:s, s:s, s:o, s:O, s:o}", "hazard", op->code,
        "title", sc_json_str(d, "title"), "risk", "major", "school", op->ev->school, "district",
        district, "location", sc_json_str(d, "location"), "category", sc_json_str(d, "category"),
        "reporter", reporter, "found_at", sc_time_format(found_at, found_s), "deadline",
        sc_time_format(deadline, deadline_s), "missing", sc_pq_value(res, r, R_MISSING), "origin",
        origin, "interim_measures", sc_pq_value(res, r, R_INTERIM));
    if (!data)
        return -ENOMEM;
    if (!sc_json_str(data, "category"))
        json_object_set_new(data, "category", json_string("other"));
    snprintf(id, sizeof id, "major:%s:%s", op->ev->school, op->code);
    rc = sc_emit(op->ctx, &(sc_emit_t){.type = "hazard.major.reported",
                                       .school = op->ev->school,
                                       .district = district,
                                       .id = id,
                                       .occurred_at = op->ev->occurred_at,
                                       .data = data});
    json_decref(data);
    return rc;
}

/*
 * What a report calls for once row r of `res` (s_report_stmt) says what became
 * of it: a major hazard is told to the district; nothing written means a taken
 * code (a resend is a no-op, anything else refused) or a deadline already past.
 * `w` is the report as s_reported left it waiting.
 */
static int s_report_done(s_op_t *op, const PGresult *res, int r, const ht_waiting_t *w)
{
    const char *risk = sc_json_str(w->data, "risk");
    int rc;
    if (!PQgetisnull(res, r, R_DEADLINE)) {
        if (strcmp(risk, "major") != 0 || !op->cfg->report_major_to_district)
            return 0;
        return s_emit_major(op, w->reporter, w->found_at, sc_pq_time(res, r, R_DEADLINE, 0),
                            w->origin, res, r);
    }
    /* Nothing written: a taken code (answered first, whatever the deadline), or a past one. */
    char *data_s = json_dumps(w->data, JSON_COMPACT);
    char *origin_s = json_dumps(w->origin, JSON_COMPACT);
    PGresult *again = NULL;
    const char *q[] = {op->ev->school, op->code, data_s, origin_s};
    if (!data_s || !origin_s)
        rc = -ENOMEM;
    else if (!(again = s_exec(op->ctx, &s_rereport_stmt, 4, q, &rc)))
        ;
    else if (PQntuples(again) == 0)
        rc = s_reject_past(op, sc_pq_time(res, r, R_GIVEN, 0));
    else if (PQgetvalue(again, 0, 0)[0] == 't')
        SC_LOG_INFO(op->ctx, "event %" PRId64 ": hazard %s at %s reported again: no change",
                    op->ev->id, op->code, op->ev->school);
    else
        rc = s_reject(op, "duplicate",
                      "hazard %s is already in the ledger of school %s with a different report",
                      op->code, op->ev->school);
    PQclear(again);
    free(data_s);
    free(origin_s);
    return rc;
}

static void s_pending_drop(ht_state_t *st)
{
    for (size_t i = 0; i < st->nwaiting; i++) {
        json_decref(st->waiting[i].data);
        json_decref(st->waiting[i].origin);
    }
    st->nwaiting = 0;
    st->rows.len = 0;
    json_object_clear(st->pending_keys);
}

/*
 * Writes the reports waiting in the batch with one statement, then does what
 * each calls for (s_report_done), in the order they came. Returns 0 or -errno;
 * nothing waits after.
 */
static int s_flush(sc_ctx_t *ctx, ht_state_t *st)
{
    size_t n = st->nwaiting;
    PGresult *res = NULL;
    int rc = -ENOMEM;
    if (n == 0)
        return 0;
    if (sc_pqbuf_json_rows(&st->send, st->rows.p, st->rows.len) < 0)
        goto out;
    const char *p[] = {st->send.p};
    if (!(res = s_exec(ctx, &s_report_stmt, 1, p, &rc)))
        goto out;
    if ((size_t)PQntuples(res) != n) { /* a row always comes back: cannot happen */
        SC_LOG_ERR(ctx, "ht_report answered %d rows for %zu reports", PQntuples(res), n);
        rc = -EIO;
        goto out;
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        const ht_waiting_t *w = &st->waiting[i];
        const sc_event_t ev = {.id = w->event,
                               .type = "hazard.reported",
                               .school = w->school,
                               .district = w->district[0] ? w->district : NULL,
                               .occurred_at = w->occurred_at,
                               .data = w->data};
        s_op_t op = {.ctx = ctx, .st = st, .cfg = &st->cfg, .ev = &ev, .code = w->hazard};
        snprintf(op.at, sizeof op.at, "%s", w->when);
        snprintf(op.now, sizeof op.now, "%s", w->now);
        snprintf(op.evid, sizeof op.evid, "%" PRId64, ev.id);
        rc = s_report_done(&op, res, (int)i, w);
    }
out:
    PQclear(res);
    s_pending_drop(st);
    return rc;
}

int ht__end_batch(sc_ctx_t *ctx, ht_state_t *st, bool keep)
{
    if (keep)
        return s_flush(ctx, st);
    s_pending_drop(st);
    return 0;
}

/* Most reports a batch keeps waiting before it writes them. */
#define S_PENDING_MAX 1024

/*
 * hazard.reported: a new hazard enters the ledger with its deadline. A report
 * already in the ledger under this code is a no-op when it is a resend (see
 * s_rereport_stmt); anything else under a taken code is refused.
 *
 * Reports come by the hundred in a batch, and a statement's round trip costs
 * more than the work of one: a report waits in the batch, as the row the
 * statement reads written as JSON text (jansson values built and dumped for
 * it had been most of the plugin's thread), and the batch's reports are
 * written together (s_flush) — before any other hazard event of
 * the batch is applied or anything is rejected, and before a second report of
 * the same code, so every event still finds what those before it left.
 */
static int s_reported(s_op_t *op)
{
    const json_t *d = op->ev->data;
    const char *reporter = sc_json_str(d, "reporter");
    const char *deadline_text = sc_json_str(d, "deadline");
    const char *limit_text = sc_json_str(d, "time_limit");
    const char *deadline_time, *deadline_date, *limit_time, *limit_date;
    json_t *origin = ht__origin_normal(json_object_get(d, "origin"));
    char *c[K_COUNT] = {NULL};
    char *tz = NULL;
    char found_s[SC_TIME_LEN], deadline_s[SC_TIME_LEN], limit_s[SC_TIME_LEN], ord[24], days[16],
        key[2 * SC_CODE_MAX + 8];
    ht_state_t *st = op->st;
    bool any;
    int rc = -ENOMEM;

    if (!reporter)
        reporter = op->ev->actor;
    if (!origin || !(tz = s_timezone(op)))
        goto out;
    if ((rc = s_deadline_param(deadline_text, deadline_s, &deadline_time, &deadline_date)) < 0 ||
        (rc = s_deadline_param(limit_text, limit_s, &limit_time, &limit_date)) < 0)
        goto out;
    sc_time_t found_at = sc_json_time(d, "found_at", op->ev->occurred_at);

    rc = -ENOMEM;
    if (s_commitments_read(op, c, NULL, &any) < 0)
        goto out;
    snprintf(key, sizeof key, "%s\x1f%s", op->ev->school, op->code);
    if (json_object_get(st->pending_keys, key) && (rc = s_flush(op->ctx, st)) < 0)
        goto out;
    rc = -ENOMEM;
    if (st->nwaiting == st->cap_waiting) {
        size_t cap = st->cap_waiting ? 2 * st->cap_waiting : 64;
        ht_waiting_t *w = realloc(st->waiting, cap * sizeof *w);
        if (!w)
            goto out;
        st->waiting = w;
        st->cap_waiting = cap;
    }
    ht_waiting_t *w = &st->waiting[st->nwaiting];
    *w = (ht_waiting_t){.at = st->rows.len,
                        .event = op->ev->id,
                        .occurred_at = op->ev->occurred_at,
                        .found_at = found_at};
    snprintf(w->school, sizeof w->school, "%s", op->ev->school);
    snprintf(w->hazard, sizeof w->hazard, "%s", op->code);
    snprintf(w->district, sizeof w->district, "%s", op->ev->district ? op->ev->district : "");
    snprintf(w->reporter, sizeof w->reporter, "%s", reporter ? reporter : "");
    snprintf(w->when, sizeof w->when, "%s", op->at);
    snprintf(w->now, sizeof w->now, "%s", op->now);
    snprintf(ord, sizeof ord, "%zu", st->nwaiting);
    snprintf(days, sizeof days, "%d", s_default_days(op, sc_json_str(d, "risk")));
    /* The row as JSON text, the event's data in it as the statement reads its fields there. */
    sc_pqbuf_t *b = &st->rows;
    if (sc_pqbuf_put(b, "{", 1) < 0 || sc_pqbuf_json_member_raw(b, "ord", ord) < 0 ||
        sc_pqbuf_json_member(b, "school", op->ev->school) < 0 ||
        sc_pqbuf_json_member(b, "hazard", op->code) < 0 ||
        sc_pqbuf_json_member(b, "district", op->ev->district) < 0 ||
        sc_pqbuf_json_member(b, "tz", tz) < 0 ||
        sc_pqbuf_json_member(b, "reporter", reporter) < 0 ||
        sc_pqbuf_json_member(b, "found_at", sc_time_format(found_at, found_s)) < 0 ||
        sc_pqbuf_json_member(b, "at", op->at) < 0 ||
        sc_pqbuf_json_member_value(b, "origin", origin) < 0 ||
        sc_pqbuf_json_member_raw(b, "event", op->evid) < 0 ||
        sc_pqbuf_json_member_value(b, "data", d) < 0 ||
        sc_pqbuf_json_member(b, "deadline_time", deadline_time) < 0 ||
        sc_pqbuf_json_member(b, "deadline_date", deadline_date) < 0 ||
        sc_pqbuf_json_member(b, "limit_time", limit_time) < 0 ||
        sc_pqbuf_json_member(b, "limit_date", limit_date) < 0 ||
        sc_pqbuf_json_member_raw(b, "days", days) < 0 ||
        sc_pqbuf_json_member(b, "now", op->now) < 0 ||
        sc_pqbuf_json_member(b, "measures", c[K_MEASURES]) < 0 ||
        sc_pqbuf_json_member(b, "responsible", c[K_RESPONSIBLE]) < 0 ||
        sc_pqbuf_json_member(b, "funds", c[K_FUNDS]) < 0 ||
        sc_pqbuf_json_member(b, "emergency_plan", c[K_EMERGENCY_PLAN]) < 0 ||
        sc_pqbuf_json_member(b, "interim_measures", c[K_INTERIM_MEASURES]) < 0 ||
        sc_pqbuf_json_row_end(b) < 0 ||
        json_object_set_new(st->pending_keys, key, json_true()) < 0) {
        b->len = w->at; /* nothing of it waits */
        goto out;
    }
    /* The data goes by reference: nothing changes an event while its batch lasts. */
    w->data = json_incref((json_t *)d);
    w->origin = origin;
    origin = NULL;
    st->nwaiting++;
    rc = st->nwaiting >= S_PENDING_MAX ? s_flush(op->ctx, st) : 0;
out:
    for (size_t i = 0; i < K_COUNT; i++)
        free(c[i]);
    json_decref(origin);
    free(tz);
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

static const s_stmt_t s_assign_stmt = {
    "ht_assign", "UPDATE hazard.hazards SET state = 'assigned', assignee = $3,"
                 "  assigned_by = $4, assigned_at = $5, updated_at = $6"
                 " WHERE school = $1 AND hazard = $2"};

/* hazard.assigned: someone is to rectify it, by the deadline given or the one in force. */
static int s_assigned(s_op_t *op)
{
    const json_t *d = op->ev->data;
    const char *assignee = sc_json_str(d, "assignee");
    sc_time_t deadline, time_limit;
    json_t *hist = NULL;
    int rc;

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
    if ((rc = s_run(op->ctx, &s_assign_stmt, 6, p)) < 0 ||
        (deadline && (rc = s_move_deadline(op, deadline)) < 0))
        return rc;
    rc = -ENOMEM;
    if (!(hist = json_pack("{s:s, s:s?, s:s?}", "assignee", assignee, "previous",
                           s_col(op, C_ASSIGNEE), "note", sc_json_str(d, "note"))))
        goto out;
    if (deadline)
        json_object_set_new(hist, "deadline_given", json_true());
    if ((rc = s_commitments(op, false, time_limit, hist)) < 0)
        goto out;
    rc = s_history_after(op, strcmp(from, "assigned") == 0 ? "reassigned" : "assigned", from,
                         "assigned", op->ev->actor, hist);
out:
    json_decref(hist);
    return rc;
}

static const s_stmt_t s_rectify_stmt = {
    "ht_rectify", "UPDATE hazard.hazards SET state = 'rectified', rectified_by = $3,"
                  "  rectified_at = $4, measures = $5, evidence = $6::jsonb,"
                  "  next_reminder_at = NULL, updated_at = $7"
                  " WHERE school = $1 AND hazard = $2"};

/* hazard.rectified: the assignee reports the hazard removed; verification is next. */
static int s_rectified(s_op_t *op)
{
    const json_t *d = op->ev->data;
    const json_t *evidence = json_object_get(d, "evidence");
    sc_time_t deadline, time_limit;
    char *evidence_s = NULL;
    json_t *hist = NULL;
    int rc;

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
    if ((rc = s_run(op->ctx, &s_rectify_stmt, 7, p)) < 0)
        goto out;
    rc = -ENOMEM;
    if (!(hist = json_pack("{s:s, s:s, s:b, s:s?}", "by", sc_json_str(d, "by"), "measures",
                           sc_json_str(d, "measures"), "on_time", on_time, "note",
                           sc_json_str(d, "note"))))
        goto out;
    if (evidence)
        json_object_set(hist, "evidence", (json_t *)evidence);
    if ((rc = s_commitments(op, true, time_limit, hist)) < 0)
        goto out;
    rc = s_history_after(op, "rectified", "assigned", "rectified", s_actor(op), hist);
out:
    free(evidence_s);
    json_decref(hist);
    return rc;
}

static const s_stmt_t s_close_stmt = {
    "ht_close", "UPDATE hazard.hazards SET state = 'closed', verified_by = $3,"
                "  verified_at = $4, closed_at = $4, updated_at = $5"
                " WHERE school = $1 AND hazard = $2"};

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
    if ((rc = s_run(op->ctx, &s_close_stmt, 5, p)) < 0)
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

static const s_stmt_t s_reopen_stmt = {
    "ht_reopen", "UPDATE hazard.hazards SET state = 'assigned', verified_by = $3,"
                 "  verified_at = $4, rectified_by = NULL, rectified_at = NULL,"
                 "  round = round + 1, deadline = $5, deadline_given = $6::boolean,"
                 "  c_time_limit = CASE WHEN $6::boolean THEN $5::timestamptz"
                 "                      ELSE c_time_limit END,"
                 "  overdue_at = NULL, next_reminder_at = NULL, reminders_sent = 0,"
                 "  updated_at = $7"
                 " WHERE school = $1 AND hazard = $2"};

/* hazard.verified not passed: the hazard is reopened with a new deadline (a new round). */
static int s_verified_failed(s_op_t *op)
{
    const json_t *d = op->ev->data;
    const char *by = sc_json_str(d, "by");
    sc_time_t deadline, unused;
    char deadline_s[SC_TIME_LEN];
    json_t *hist = NULL;
    int rc;

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
    if ((rc = s_run(op->ctx, &s_reopen_stmt, 7, p)) < 0)
        return rc;
    rc = -ENOMEM;
    if (!(hist = json_pack("{s:s, s:b, s:s?, s:s?}", "by", by, "passed", 0, "note",
                           sc_json_str(d, "note"), "rectified_by", s_col(op, C_RECTIFIED_BY))))
        goto out;
    rc = s_history_after(op, "reopened", "rectified", "assigned", by, hist);
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

static const s_stmt_t s_withdraw_stmt = {
    "ht_withdraw", "UPDATE hazard.hazards SET state = 'withdrawn', withdrawn_by = $3,"
                   "  withdrawn_at = $4, withdrawn_reason = $5, next_reminder_at = NULL,"
                   "  updated_at = $6"
                   " WHERE school = $1 AND hazard = $2"};

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
    if ((rc = s_run(op->ctx, &s_withdraw_stmt, 6, p)) < 0)
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
    int rc;
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
    if ((rc = s_commitments(op, false, time_limit, hist)) < 0)
        goto out;
    rc = s_history_after(op, "commitments", s_col(op, C_STATE), s_col(op, C_STATE), s_actor(op),
                         hist);
out:
    json_decref(hist);
    return rc;
}

/* `load`: the type acts on a hazard in the ledger, read and locked first (s_load). */
static const struct {
    const char *type;
    sc_validate_fn validate;
    int (*apply)(s_op_t *op);
    bool load;
} s_ops[] = {
    {"hazard.reported", ht__validate_reported, s_reported, false},
    {"hazard.assigned", ht__validate_assigned, s_assigned, true},
    {"hazard.rectified", ht__validate_rectified, s_rectified, true},
    {"hazard.verified", ht__validate_verified, s_verified, true},
    {"hazard.withdrawn", ht__validate_withdrawn, s_withdrawn, true},
    {"hazard.commitments", ht__validate_commitments, s_commitments_event, true},
};

/* Every statement ht__prepare() prepares. */
static const s_stmt_t *const s_stmts[] = {
    &s_history_stmt,       &s_history_after_stmt, &s_load_stmt,          &s_deadline_default_stmt,
    &s_deadline_date_stmt, &s_commitments_stmt,   &s_move_deadline_stmt, &s_report_stmt,
    &s_rereport_stmt,      &s_assign_stmt,        &s_rectify_stmt,       &s_close_stmt,
    &s_reopen_stmt,        &s_withdraw_stmt,
};

int ht__prepare(sc_ctx_t *ctx)
{
    PGconn *conn = sc_db(ctx);
    PGresult *have = NULL;
    int rc = 0;

    /* A reload while the database is away: the core runs init again once it is back. */
    if (!conn || PQstatus(conn) != CONNECTION_OK)
        return 0;
    /* A reload runs init again on the same connection, which keeps what it prepared. */
    if (!(have = ht__exec(ctx, "SELECT name FROM pg_prepared_statements", 0, NULL, &rc)))
        return rc;
    for (size_t i = 0; i < sizeof s_stmts / sizeof s_stmts[0] && rc == 0; i++) {
        bool prepared = false;
        for (int r = 0; r < PQntuples(have) && !prepared; r++)
            prepared = strcmp(PQgetvalue(have, r, 0), s_stmts[i]->name) == 0;
        if (prepared)
            continue;
        PGresult *res = PQprepare(conn, s_stmts[i]->name, s_stmts[i]->sql, 0, NULL);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            rc = sc_pq_error(conn, res);
            SC_LOG_ERR(ctx, "could not prepare %s: %s", s_stmts[i]->name, PQerrorMessage(conn));
        }
        PQclear(res);
    }
    PQclear(have);
    return rc;
}

int ht__handle(sc_ctx_t *ctx, ht_state_t *st, const sc_event_t *ev)
{
    s_op_t op = {
        .ctx = ctx, .st = st, .cfg = &st->cfg, .ev = ev, .code = sc_json_str(ev->data, "hazard")};
    int (*apply)(s_op_t *) = NULL;
    sc_validate_fn validate = NULL;
    bool load = false;
    char detail[256];
    int rc;

    for (size_t i = 0; i < sizeof s_ops / sizeof s_ops[0]; i++)
        if (strcmp(ev->type, s_ops[i].type) == 0) {
            apply = s_ops[i].apply;
            validate = s_ops[i].validate;
            load = s_ops[i].load;
        }
    if (!apply)
        return 0; /* what this plugin raised itself, or a type it does not act on */
    sc_time_format(ev->occurred_at, op.at);
    sc_time_format(sc_now(ctx), op.now);
    snprintf(op.evid, sizeof op.evid, "%" PRId64, ev->id);
    /* Ingest checked it already; checked again so nothing unchecked ever reaches the ledger. */
    bool valid = ev->school && validate(ev, detail, sizeof detail) == 0;
    /* The reports waiting are written before anything else is applied or rejected. */
    if ((apply != s_reported || !valid) && (rc = s_flush(ctx, st)) < 0)
        return rc;
    if (!ev->school)
        return s_reject(&op, "no_school", "%s needs a school", ev->type);
    if (!valid)
        return s_reject(&op, "invalid", "%s", detail);
    if (load && (rc = s_load(&op)) < 0)
        return rc;
    rc = apply(&op);
    PQclear(op.row);
    return rc;
}
