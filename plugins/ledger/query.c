/* ledger: read requests — the ledger answer in sections (paged), figures, assessment, lists. */
#include "ledger.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Section statements share their parameters: $1 school id, $2 time zone, $3 from, $4 to
 * (inclusive local dates), $5 the key after which the page starts (NULL: from the start),
 * $6 the most rows, $7 a section's extra (directory parties, drill kinds or school code).
 * Each returns (_k, _r): a key unique and ordered within the section, and the row as a JSON
 * array in the order of the section's columns.
 */
#define LO "($3::date::timestamp AT TIME ZONE $2::text)"
#define HI "(($4::date + 1)::timestamp AT TIME ZONE $2::text)"
#define LT(ts) "ledger.local_time(" ts ", $2::text)"
#define TK(ts) "to_char((" ts ") AT TIME ZONE 'UTC', 'YYYYMMDDHH24MISSUS')"
#define PAGE(inner)                                                                                \
    "SELECT s._k, s._r FROM (" inner ") s"                                                         \
    " WHERE $5::text IS NULL OR s._k COLLATE \"C\" > $5::text"                                     \
    " ORDER BY s._k COLLATE \"C\" LIMIT $6::int"

#define S_LIMIT_MAX 5000
#define S_FAR_PAST "2000-01-01"
#define S_FAR_FUTURE "2999-12-31"

typedef struct s_q {
    sc_ctx_t *ctx;
    lg_state_t *st;
    lg_school_t s;
    char id[16];
    char from[16], to[16];
    int64_t from_day, to_day;
    char *parties;      /* lazily: the directory's agreement parties */
    json_t *assessment; /* lazily: the assessment, for its section */
} s_q_t;

enum s_extra { X_NONE, X_PARTIES, X_KINDS, X_CODE };

struct s_section;
typedef int (*s_fetch_fn)(s_q_t *q, const struct s_section *sec, const char *after, int limit,
                          json_t *rows, json_t *keys);

struct s_section {
    const char *key, *zh, *en;
    const char *const *columns;
    const char *sql;
    enum s_extra extra;
    s_fetch_fn fetch;
};

PGresult *lg_pq_text(sc_ctx_t *ctx, const char *sql, int n, const char *const *params, int *rc)
{
    Oid types[16];
    for (int i = 0; i < n && i < 16; i++)
        types[i] = 25; /* text */
    PGconn *db = sc_db(ctx);
    PGresult *res = PQexecParams(db, sql, n, types, params, NULL, NULL, 0);
    if (PQresultStatus(res) == PGRES_TUPLES_OK || PQresultStatus(res) == PGRES_COMMAND_OK) {
        *rc = 0;
        return res;
    }
    *rc = sc_pq_error(db, res);
    SC_LOG_ERR(ctx, "%s", PQerrorMessage(db));
    PQclear(res);
    return NULL;
}

/* ---- sections ---------------------------------------------------------------------------- */

static int s_fetch_sql(s_q_t *q, const struct s_section *sec, const char *after, int limit,
                       json_t *rows, json_t *keys)
{
    char lim[16];
    const char *extra = NULL;
    int rc;
    snprintf(lim, sizeof lim, "%d", limit);
    if (sec->extra == X_PARTIES) {
        if (!q->parties && !(q->parties = lg_directory_parties(q->ctx, q->st, q->s.code)))
            return -EAGAIN;
        extra = q->parties;
    } else if (sec->extra == X_KINDS) {
        extra = q->st->drill_kinds;
    } else if (sec->extra == X_CODE) {
        extra = q->s.code;
    }
    const char *p[7] = {q->id, q->s.tz, q->from, q->to, after, lim, extra};
    PGresult *res = lg_pq_text(q->ctx, sec->sql, 7, p, &rc);
    if (!res)
        return rc;
    int n = PQntuples(res);
    for (int i = 0; i < n; i++) {
        json_array_append_new(keys, json_string(PQgetvalue(res, i, 0)));
        json_array_append_new(rows, sc_pq_value(res, i, 1));
    }
    PQclear(res);
    return n;
}

/* Rows computed in C, paged by their index ("000012"). */
static int s_page_array(const json_t *all, const char *after, int limit, json_t *rows, json_t *keys)
{
    size_t start = after ? (size_t)atol(after) + 1 : 0;
    int n = 0;
    for (size_t i = start; i < json_array_size(all) && n < limit; i++, n++) {
        char key[24];
        snprintf(key, sizeof key, "%06zu", i);
        json_array_append_new(keys, json_string(key));
        json_array_append(rows, json_array_get(all, i));
    }
    return n;
}

static int s_fetch_assessment(s_q_t *q, const struct s_section *sec, const char *after, int limit,
                              json_t *rows, json_t *keys)
{
    (void)sec;
    int rc = 0;
    if (!q->assessment && !(q->assessment = lg_assess(q->ctx, q->st, &q->s, q->from, q->to, &rc)))
        return rc;
    json_t *all = lg_assess_rows(q->assessment, q->st->penalties);
    if (!all)
        return -ENOMEM;
    int n = s_page_array(all, after, limit, rows, keys);
    json_decref(all);
    return n;
}

static int s_fetch_people(s_q_t *q, const struct s_section *sec, const char *after, int limit,
                          json_t *rows, json_t *keys)
{
    (void)sec;
    return lg_assess_people(q->ctx, q->st, &q->s, q->from, q->to, after, limit, rows, keys);
}

/* Pupil card access summarised per day: paged by date, each page a bounded range scan. */
static const char s_cards_sql[] =
    "SELECT to_char(d, 'YYYY-MM-DD'), json_build_array(to_char(d, 'YYYY-MM-DD'), ent, ex, cards)"
    "  FROM (SELECT (ts AT TIME ZONE $2::text)::date AS d,"
    "               count(*) FILTER (WHERE direction = 1) AS ent,"
    "               count(*) FILTER (WHERE direction = 2) AS ex, count(DISTINCT card) AS cards"
    "          FROM ledger.card_events"
    "         WHERE school_id = $1::int AND ts < " HI
    "           AND ts >= CASE WHEN $5::text IS NULL THEN " LO
    "                          ELSE GREATEST(" LO
    ", ($5::date + 1)::timestamp AT TIME ZONE $2::text)"
    "                     END"
    "         GROUP BY 1) g"
    " ORDER BY d LIMIT $6::int";

static const char *const c_leadership[] = {"member", "name",   "position",   "duty",
                                           "since",  "active", "updated_at", NULL};
static const char *const c_agreements[] = {"agreement", "term",  "party",        "party_role",
                                           "signed_on", "title", "counterparty", NULL};
static const char *const c_shares[] = {"term",     "party_role", "required", "signed",
                                       "unsigned", "share",      NULL};
static const char *const c_unsigned[] = {"term", "party_role", "party", "name", NULL};
static const char *const c_rules[] = {"rule",     "version",        "title",
                                      "category", "effective_from", "published_at",
                                      "url",      "summary",        NULL};
static const char *const c_drills[] = {"drill",
                                       "kind",
                                       "status",
                                       "starts_at",
                                       "ends_at",
                                       "participants",
                                       "evacuation_seconds",
                                       "problems",
                                       "responsible",
                                       "note",
                                       NULL};
static const char *const c_drill_months[] = {"month", "in_term_days",   "required", "held",
                                             "met",   "overdue_raised", NULL};
static const char *const c_education[] = {"session",      "held_at",          "topic",
                                          "title",        "classes",          "teacher",
                                          "participants", "duration_minutes", NULL};
static const char *const c_meetings[] = {"meeting",   "held_at",   "title",   "chair",
                                         "attendees", "decisions", "minutes", NULL};
static const char *const c_outings[] = {"outing",
                                        "title",
                                        "submitted_at",
                                        "submitted_by",
                                        "starts_at",
                                        "ends_at",
                                        "place",
                                        "route",
                                        "headcount",
                                        "responsible",
                                        "security_measures",
                                        "emergency_plan",
                                        "status",
                                        "refusal",
                                        "decided_by",
                                        "decided_at",
                                        "returned_at",
                                        "returned_headcount",
                                        "reminders",
                                        NULL};
static const char *const c_visitors[] = {
    "visit",   "name",       "organisation", "purpose",    "host", "gate",
    "vehicle", "entered_at", "exited_at",    "overstayed", NULL};
static const char *const c_cards[] = {"date", "entries", "exits", "cards", NULL};
static const char *const c_assessment[] = {"component", "measure", "done",   "expected",
                                           "rate",      "weight",  "points", NULL};
static const char *const c_people[] = {"person",
                                       "name",
                                       "inspections_completed",
                                       "hazards_assigned",
                                       "hazards_overdue",
                                       "hazards_closed",
                                       "drills_led",
                                       "education_sessions",
                                       "outings_led",
                                       "agreements_signed",
                                       NULL};

/* The school's sections in the plan's order (the export merges other plugins' in between). */
static const struct s_section s_sections[] = {
    {"leadership", "安全工作领导小组", "Safety leadership group", c_leadership,
     PAGE("SELECT CASE position WHEN 'leader' THEN '1' WHEN 'deputy' THEN '2' ELSE '3' END"
          "       || ' ' || member AS _k,"
          "       json_build_array(member, name, position, duty, since, active,"
          "                        " LT(
              "updated_at") ") AS _r"
                            "  FROM ledger.leadership WHERE school_id = $1::int"
                            "   AND (since IS NULL OR since <= $4::date) AND (active OR updated_at "
                            ">= " LO ")"),
     X_NONE, s_fetch_sql},
    {"agreements", "安全责任书", "Responsibility agreements", c_agreements,
     PAGE("SELECT to_char(signed_on, 'YYYYMMDD') || ' ' || agreement AS _k,"
          "       json_build_array(agreement, term, party, party_role, signed_on, title,"
          "                        counterparty) AS _r"
          "  FROM ledger.agreements WHERE school_id = $1::int"
          "   AND signed_on BETWEEN $3::date AND $4::date"),
     X_NONE, s_fetch_sql},
    {"agreement_shares", "责任书签订率", "Agreements signed per role", c_shares,
     PAGE(
         LG_AGREEMENT_CTE
         "SELECT k.term || ' ' || k.party_role AS _k,"
         "       json_build_array(k.term, k.party_role, rq.n, sg.n, rq.n - ok.n,"
         "                        CASE WHEN rq.n > 0 THEN round(ok.n::numeric / rq.n, 4) END) AS _r"
         "  FROM (SELECT term, party_role FROM req UNION SELECT term, party_role FROM sig) k,"
         "       LATERAL (SELECT count(*) AS n FROM req"
         "                 WHERE req.term = k.term AND req.party_role = k.party_role) rq,"
         "       LATERAL (SELECT count(*) AS n FROM sig"
         "                 WHERE sig.term = k.term AND sig.party_role = k.party_role) sg,"
         "       LATERAL (SELECT count(*) AS n FROM req JOIN sig USING (term, party_role, party)"
         "                 WHERE req.term = k.term AND req.party_role = k.party_role) ok"),
     X_PARTIES, s_fetch_sql},
    {"agreements_unsigned", "未签订责任书名单", "Agreements not signed", c_unsigned,
     PAGE(LG_AGREEMENT_CTE
          "SELECT u.term || ' ' || u.party_role || ' ' || u.party AS _k,"
          "       json_build_array(u.term, u.party_role, u.party,"
          "                        (SELECT min(dir.name) FROM dir WHERE dir.party = u.party)) AS _r"
          "  FROM (SELECT * FROM req EXCEPT SELECT * FROM sig) u"),
     X_PARTIES, s_fetch_sql},
    {"rules", "安全管理制度", "Safety rules", c_rules,
     PAGE("SELECT rule || ' ' || version AS _k,"
          "       json_build_array(rule, version, title, category, effective_from,"
          "                        " LT("published_at") ", url, summary) AS _r"
                                                        "  FROM ledger.rules WHERE school_id = "
                                                        "$1::int AND published_at < " HI),
     X_NONE, s_fetch_sql},
    {"drills", "消防与疏散演练", "Fire and evacuation drills", c_drills,
     PAGE("SELECT " TK(
         "COALESCE(starts_at, scheduled_start)") " || ' ' || drill AS _k,"
                                                 "       json_build_array(drill, "
                                                 "kind, status,"
                                                 "                        " LT(
                                                     "COALESCE(starts_at, "
                                                     "scheduled_start)") ","
                                                                         "           "
                                                                         "           "
                                                                         "  " LT(
                                                                             "COALESC"
                                                                             "E(ends_"
                                                                             "at, "
                                                                             "schedul"
                                                                             "ed_"
                                                                             "end)") ", "
                                                                                     "participants,"
                                                                                     "             "
                                                                                     "           "
                                                                                     "evacuation_"
                                                                                     "seconds, "
                                                                                     "problems, "
                                                                                     "responsible, "
                                                                                     "note) AS _r"
                                                                                     "  FROM "
                                                                                     "ledger."
                                                                                     "drills WHERE "
                                                                                     "school_id = "
                                                                                     "$1::int"
                                                                                     "   AND "
                                                                                     "COALESCE("
                                                                                     "starts_at, "
                                                                                     "scheduled_"
                                                                                     "start) >= " LO
                                                                                     "   AND "
                                                                                     "COALESCE("
                                                                                     "starts_at, "
                                                                                     "scheduled_"
                                                                                     "start) "
                                                                                     "< " HI),
     X_NONE, s_fetch_sql},
    {"drill_months", "每月疏散演练检查", "Monthly evacuation drill check", c_drill_months,
     PAGE("SELECT to_char(m.month, 'YYYY-MM') AS _k,"
          "       json_build_array(to_char(m.month, 'YYYY-MM'), m.in_term_days, m.required,"
          "                        h.n, h.n >= m.required, m.held < m.required) AS _r"
          "  FROM ledger.drill_months m,"
          "       LATERAL (SELECT count(*) AS n FROM ledger.drills x"
          "                 WHERE x.school_id = m.school_id AND x.status IN ('running', 'ended')"
          "                   AND x.kind IN (SELECT jsonb_array_elements_text($7::jsonb))"
          "                   AND x.starts_at >= m.month::timestamp AT TIME ZONE $2::text"
          "                   AND x.starts_at < (m.month + interval '1 month')::timestamp"
          "                                     AT TIME ZONE $2::text) h"
          " WHERE m.school_id = $1::int"
          "   AND m.month BETWEEN date_trunc('month', $3::date) AND $4::date"),
     X_KINDS, s_fetch_sql},
    {"education", "安全教育", "Safety education", c_education,
     PAGE("SELECT " TK(
         "held_at") " || ' ' || session AS _k,"
                    "       json_build_array(session, " LT(
                        "held_at") ", topic, title, classes, teacher,"
                                   "                        participants, duration_minutes) AS _r"
                                   "  FROM ledger.education WHERE school_id = $1::int"
                                   "   AND held_at >= " LO " AND held_at < " HI),
     X_NONE, s_fetch_sql},
    {"meetings", "安全工作会议", "Safety meetings", c_meetings,
     PAGE("SELECT " TK("held_at") " || ' ' || meeting AS _k,"
                                  "       json_build_array(meeting, " LT(
                                      "held_at") ", title, chair, attendees,"
                                                 "                        decisions, minutes) AS _r"
                                                 "  FROM ledger.meetings WHERE school_id = $1::int"
                                                 "   AND held_at >= " LO " AND held_at < " HI),
     X_NONE, s_fetch_sql},
    {"outings", "集体外出活动", "Group outings", c_outings,
     PAGE("SELECT " TK(
         "submitted_at") " || ' ' || outing AS _k,"
                         "       json_build_array(outing, title, " LT(
                             "submitted_at") ", submitted_by,"
                                             "                        " LT("starts_at") ", " LT(
                                                 "ends_at") ", place, route,"
                                                            "                        headcount, "
                                                            "responsible, security_measures, "
                                                            "emergency_plan,"
                                                            "                        status, "
                                                            "refusal, decided_by, " LT(
                                                                "decided_at") ","
                                                                              "                    "
                                                                              "    " LT("returned_"
                                                                                        "at") ", "
                                                                                              "retu"
                                                                                              "rned"
                                                                                              "_hea"
                                                                                              "dcou"
                                                                                              "nt, "
                                                                                              "remi"
                                                                                              "nder"
                                                                                              "s) "
                                                                                              "AS "
                                                                                              "_r"
                                                                                              "  "
                                                                                              "FROM"
                                                                                              " led"
                                                                                              "ger."
                                                                                              "outi"
                                                                                              "ngs "
                                                                                              "WHER"
                                                                                              "E "
                                                                                              "scho"
                                                                                              "ol_"
                                                                                              "id "
                                                                                              "= "
                                                                                              "$1::"
                                                                                              "int"
                                                                                              "   "
                                                                                              "AND "
                                                                                              "(("
                                                                                              "subm"
                                                                                              "itte"
                                                                                              "d_"
                                                                                              "at "
                                                                                              ">="
                                                                                              " " LO
                                                                                              " AND"
                                                                                              " sub"
                                                                                              "mitt"
                                                                                              "ed_"
                                                                                              "at "
                                                                                              "<"
                                                                                              " " HI
                                                                                              ")"
                                                                                              "    "
                                                                                              "    "
                                                                                              "OR "
                                                                                              "(sta"
                                                                                              "rts_"
                                                                                              "at "
                                                                                              ">="
                                                                                              " " LO
                                                                                              " AND"
                                                                                              " sta"
                                                                                              "rts_"
                                                                                              "at "
                                                                                              "<"
                                                                                              " " HI
                                                                                              "))"),
     X_NONE, s_fetch_sql},
    {"gate_visitors", "门卫来访登记", "Gate register: visitors", c_visitors,
     PAGE("SELECT " TK(
         "entered_at") " || ' ' || visit AS _k,"
                       "       json_build_array(visit, name, organisation, purpose, host, gate, "
                       "vehicle,"
                       "                        " LT("entered_at") ", " LT(
                           "exited_at") ", overstayed) AS _r"
                                        "  FROM ledger.visits WHERE school_id = $1::int"
                                        "   AND entered_at >= " LO " AND entered_at < " HI),
     X_NONE, s_fetch_sql},
    {"gate_cards", "学生刷卡出入（按日）", "Gate register: pupil cards per day", c_cards,
     s_cards_sql, X_NONE, s_fetch_sql},
    {"assessment", "年度安全考核", "Year-end safety assessment", c_assessment, NULL, X_NONE,
     s_fetch_assessment},
    {"assessment_people", "责任人考核", "Assessment per responsible person", c_people, NULL, X_NONE,
     s_fetch_people},
};
#define S_NSECTIONS (sizeof s_sections / sizeof s_sections[0])

static const char *const c_district[] = {"school",    "name",    "score",     "inspections",
                                         "hazards",   "drills",  "education", "agreements",
                                         "incidents", "penalty", NULL};

static int s_fetch_district(s_q_t *q, const struct s_section *sec, const char *after, int limit,
                            json_t *rows, json_t *keys);

/* The district summary: one row per school, the same figures as each school's assessment. */
static const struct s_section s_district_sections[] = {
    {"district_summary", "学区安全考核汇总", "District summary by school", c_district, NULL, X_NONE,
     s_fetch_district},
};

/* ---- requests ---------------------------------------------------------------------------- */

static int s_error(json_t **reply, const char *detail)
{
    *reply = json_pack("{s:s}", "error", detail);
    return -EINVAL;
}

/* A school's directory view for replies: new reference. */
static json_t *s_school_json(sc_ctx_t *ctx, const lg_school_t *s)
{
    json_t *info = ctx->host->school(ctx, s->code);
    json_t *out = json_pack(
        "{s:s, s:s?, s:s?, s:s}", "school", s->code, "name", sc_json_str(info, "name"), "district",
        s->district[0] ? s->district : sc_json_str(info, "district"), "timezone", s->tz);
    json_decref(info);
    return out;
}

/* The school as this plugin knows it, or (id 0, matching nothing) as the directory does. */
static int s_load_school(sc_ctx_t *ctx, const char *code, lg_school_t *s)
{
    int rc = lg_school_find(ctx, code, s);
    if (rc != -ENOENT)
        return rc;
    memset(s, 0, sizeof *s);
    snprintf(s->code, sizeof s->code, "%s", code);
    snprintf(s->tz, sizeof s->tz, "%s", ctx->host->default_timezone(ctx));
    json_t *info = ctx->host->school(ctx, code);
    if (sc_json_str(info, "district"))
        snprintf(s->district, sizeof s->district, "%s", sc_json_str(info, "district"));
    json_decref(info);
    return 0;
}

/*
 * Reads {from, to} (required or defaulted to all time) and the paging members into q.
 * Returns 0, or -EINVAL with the detail in err.
 */
static int s_period(s_q_t *q, const json_t *req, bool required, char *err, size_t elen)
{
    int rc;
    if ((rc = sc_check_date(req, "", "from", required, err, elen)) < 0 ||
        (rc = sc_check_date(req, "", "to", required, err, elen)) < 0 ||
        (rc = sc_check_int(req, "", "limit", false, 1, S_LIMIT_MAX, err, elen)) < 0 ||
        (rc = sc_check_string(req, "", "after", false, 512, err, elen)) < 0)
        return rc;
    snprintf(q->from, sizeof q->from, "%s",
             sc_json_str(req, "from") ? sc_json_str(req, "from") : S_FAR_PAST);
    snprintf(q->to, sizeof q->to, "%s",
             sc_json_str(req, "to") ? sc_json_str(req, "to") : S_FAR_FUTURE);
    sc_date_parse(q->from, &q->from_day);
    sc_date_parse(q->to, &q->to_day);
    if (q->to_day < q->from_day)
        return sc_fail(err, elen, "to: must not be before from");
    return 0;
}

static int s_school_request(s_q_t *q, const json_t *req, bool dates, char *err, size_t elen)
{
    int rc;
    if ((rc = sc_check_code(req, "", "school", true, err, elen)) < 0 ||
        (rc = s_period(q, req, dates, err, elen)) < 0)
        return rc;
    if ((rc = s_load_school(q->ctx, sc_json_str(req, "school"), &q->s)) < 0) {
        snprintf(err, elen, "database unavailable");
        return rc;
    }
    snprintf(q->id, sizeof q->id, "%d", q->s.id);
    return 0;
}

/*
 * One page of a ledger answer: sections from the cursor on until `limit` rows are placed. A
 * section cut by the page continues on the next, its header repeated. The cursor is
 * "<section index>:<key of the last row given>" (key empty: the section from its start).
 */
static int s_page(s_q_t *q, const struct s_section *secs, size_t nsecs, const json_t *req,
                  json_t *reply, char *err, size_t elen)
{
    const char *cursor = sc_json_str(req, "after");
    int limit = (int)sc_json_int(req, "limit", q->st->page_limit);
    size_t start = 0;
    const char *after = NULL;
    if (cursor) {
        char *end;
        unsigned long i = strtoul(cursor, &end, 10);
        if (end == cursor || *end != ':' || i >= nsecs)
            return sc_fail(err, elen, "after: not a cursor from a previous answer");
        start = i;
        after = end[1] ? end + 1 : NULL;
    }
    json_t *sections = json_array();
    json_t *next = json_null();
    int left = limit, rc = 0;
    for (size_t i = start; i < nsecs; i++) {
        const struct s_section *sec = &secs[i];
        json_t *rows = json_array(), *keys = json_array(), *cols = json_array();
        int got = sec->fetch(q, sec, i == start ? after : NULL, left + 1, rows, keys);
        if (got < 0) {
            rc = got;
            json_decref(rows);
            json_decref(keys);
            json_decref(cols);
            break;
        }
        bool more = got > left;
        while (json_array_size(rows) > (size_t)left) {
            json_array_remove(rows, json_array_size(rows) - 1);
            json_array_remove(keys, json_array_size(keys) - 1);
        }
        for (const char *const *c = sec->columns; *c; c++)
            json_array_append_new(cols, json_string(*c));
        json_array_append_new(sections, json_pack("{s:s, s:s, s:s, s:o, s:o}", "key", sec->key,
                                                  "title_zh", sec->zh, "title_en", sec->en,
                                                  "columns", cols, "rows", rows));
        if (more) {
            char buf[600];
            snprintf(buf, sizeof buf, "%zu:%s", i,
                     json_string_value(json_array_get(keys, json_array_size(keys) - 1)));
            json_decref(next);
            next = json_string(buf);
        }
        json_decref(keys);
        if (more)
            break;
        left -= got;
        if (left == 0 && i + 1 < nsecs) {
            char buf[32];
            snprintf(buf, sizeof buf, "%zu:", i + 1);
            json_decref(next);
            next = json_string(buf);
            break;
        }
    }
    json_object_set_new(reply, "sections", sections);
    json_object_set_new(reply, "next", next);
    if (rc < 0)
        snprintf(err, elen, "database unavailable");
    return rc;
}

static int s_fetch_district(s_q_t *q, const struct s_section *sec, const char *after, int limit,
                            json_t *rows, json_t *keys)
{
    (void)sec;
    json_t *listed = q->ctx->host->district_schools(q->ctx, q->s.district);
    json_t *codes = json_array();
    const json_t *e;
    size_t i;
    char lim[16];
    int rc, n = 0;
    json_array_foreach(listed, i, e) if (sc_json_str(e, "school"))
        json_array_append_new(codes, json_string(sc_json_str(e, "school")));
    char *codes_text = json_dumps(codes, JSON_COMPACT);
    snprintf(lim, sizeof lim, "%d", limit);
    const char *p[4] = {q->s.district, codes_text, after, lim};
    PGresult *res = lg_pq_text(q->ctx,
                               "SELECT c FROM (SELECT school AS c FROM ledger.schools"
                               "                WHERE district = $1"
                               "               UNION SELECT jsonb_array_elements_text($2::jsonb)) x"
                               " WHERE $3::text IS NULL OR c COLLATE \"C\" > $3::text"
                               " ORDER BY c COLLATE \"C\" LIMIT $4::int",
                               4, p, &rc);
    json_decref(listed);
    json_decref(codes);
    free(codes_text);
    if (!res)
        return rc;
    for (int r = 0; r < PQntuples(res) && rc == 0; r++) {
        lg_school_t s;
        const char *code = PQgetvalue(res, r, 0);
        if ((rc = s_load_school(q->ctx, code, &s)) < 0)
            break;
        json_t *a = lg_assess(q->ctx, q->st, &s, q->from, q->to, &rc);
        if (!a)
            break;
        json_t *rates = json_object(), *c;
        json_array_foreach(json_object_get(a, "components"), i, c)
            json_object_set(rates, sc_json_str(c, "component"), json_object_get(c, "rate"));
        json_t *info = q->ctx->host->school(q->ctx, code);
        json_t *row =
            json_pack("[s, s?, O, O?, O?, O?, O?, O?, I, O]", code, sc_json_str(info, "name"),
                      json_object_get(a, "score"), json_object_get(rates, "inspections"),
                      json_object_get(rates, "hazards"), json_object_get(rates, "drills"),
                      json_object_get(rates, "education"), json_object_get(rates, "agreements"),
                      sc_json_int(a, "incidents_total", 0), json_object_get(a, "penalty"));
        json_decref(info);
        json_decref(rates);
        json_decref(a);
        if (!row) {
            rc = -ENOMEM;
            break;
        }
        json_array_append_new(rows, row);
        json_array_append_new(keys, json_string(code));
        n++;
    }
    PQclear(res);
    return rc < 0 ? rc : n;
}

/* what: "ledger" — a school's sections, or with `district` the district summary. */
static int s_ledger(sc_ctx_t *ctx, lg_state_t *st, const json_t *req, json_t **reply)
{
    char err[256] = "";
    s_q_t q = {.ctx = ctx, .st = st};
    json_t *out = json_object();
    int rc;
    if (json_object_get(req, "district") && !json_object_get(req, "school")) {
        if ((rc = sc_check_code(req, "", "district", true, err, sizeof err)) < 0 ||
            (rc = s_period(&q, req, true, err, sizeof err)) < 0)
            goto out;
        snprintf(q.s.district, sizeof q.s.district, "%s", sc_json_str(req, "district"));
        json_object_set_new(out, "district", json_string(q.s.district));
        json_object_set_new(out, "from", json_string(q.from));
        json_object_set_new(out, "to", json_string(q.to));
        rc = s_page(&q, s_district_sections, 1, req, out, err, sizeof err);
        goto out;
    }
    if ((rc = s_school_request(&q, req, true, err, sizeof err)) < 0)
        goto out;
    json_object_set_new(out, "school", s_school_json(ctx, &q.s));
    json_object_set_new(out, "from", json_string(q.from));
    json_object_set_new(out, "to", json_string(q.to));
    rc = s_page(&q, s_sections, S_NSECTIONS, req, out, err, sizeof err);
out:
    free(q.parties);
    json_decref(q.assessment);
    if (rc < 0) {
        json_decref(out);
        s_error(reply, err);
        return rc;
    }
    *reply = out;
    return 0;
}

/* what: one section's key — that section alone, paged the same way. */
static int s_one_section(sc_ctx_t *ctx, lg_state_t *st, const struct s_section *sec,
                         const json_t *req, json_t **reply)
{
    char err[256] = "";
    s_q_t q = {.ctx = ctx, .st = st};
    json_t *out = json_object();
    int rc;
    if ((rc = s_school_request(&q, req, false, err, sizeof err)) == 0 &&
        (rc = s_page(&q, sec, 1, req, out, err, sizeof err)) == 0) {
        json_t *only = json_array_get(json_object_get(out, "sections"), 0);
        json_object_set(out, "columns", json_object_get(only, "columns"));
        json_object_set(out, "rows", json_object_get(only, "rows"));
        json_object_del(out, "sections");
    }
    free(q.parties);
    json_decref(q.assessment);
    if (rc < 0) {
        json_decref(out);
        return s_error(reply, err);
    }
    *reply = out;
    return 0;
}

/* ---- figures ----------------------------------------------------------------------------- */

static const char s_figures_sql[] =
    "WITH b AS (SELECT " LO " AS lo, " HI " AS hi)"
    " SELECT"
    "  (SELECT count(*) FROM ledger.drills x, b WHERE x.school_id = $1::int"
    "     AND x.status IN ('running', 'ended') AND x.starts_at >= b.lo AND x.starts_at < b.hi),"
    "  (SELECT count(*) FROM ledger.drills x, b WHERE x.school_id = $1::int"
    "     AND x.status IN ('running', 'ended') AND x.starts_at >= b.lo AND x.starts_at < b.hi"
    "     AND x.kind IN (SELECT jsonb_array_elements_text($5::jsonb))),"
    "  (SELECT count(*) FROM ledger.drill_months m WHERE m.school_id = $1::int"
    "     AND m.month BETWEEN date_trunc('month', $3::date) AND $4::date AND m.held < m.required),"
    "  (SELECT count(*) FROM ledger.education x, b WHERE x.school_id = $1::int"
    "     AND x.held_at >= b.lo AND x.held_at < b.hi),"
    "  (SELECT count(*) FROM ledger.meetings x, b WHERE x.school_id = $1::int"
    "     AND x.held_at >= b.lo AND x.held_at < b.hi),"
    "  (SELECT count(*) FROM ledger.agreements x WHERE x.school_id = $1::int"
    "     AND x.signed_on BETWEEN $3::date AND $4::date),"
    "  (SELECT count(*) FROM ledger.rules x, b WHERE x.school_id = $1::int"
    "     AND x.published_at >= b.lo AND x.published_at < b.hi),"
    "  (SELECT count(*) FROM ledger.leadership x WHERE x.school_id = $1::int AND x.active),"
    "  (SELECT count(*) FROM ledger.outings x, b WHERE x.school_id = $1::int"
    "     AND x.submitted_at >= b.lo AND x.submitted_at < b.hi),"
    "  (SELECT count(*) FROM ledger.outings x, b WHERE x.school_id = $1::int"
    "     AND x.submitted_at >= b.lo AND x.submitted_at < b.hi AND x.status = 'refused'),"
    "  (SELECT count(*) FROM ledger.outings x, b WHERE x.school_id = $1::int"
    "     AND x.submitted_at >= b.lo AND x.submitted_at < b.hi"
    "     AND x.status IN ('approved', 'returned')),"
    "  (SELECT count(*) FROM ledger.outings x, b WHERE x.school_id = $1::int"
    "     AND x.submitted_at >= b.lo AND x.submitted_at < b.hi AND x.status = 'returned'),"
    "  (SELECT count(*) FROM ledger.visits x, b WHERE x.school_id = $1::int"
    "     AND x.entered_at >= b.lo AND x.entered_at < b.hi),"
    "  (SELECT count(*) FROM ledger.visits x, b WHERE x.school_id = $1::int"
    "     AND x.entered_at >= b.lo AND x.entered_at < b.hi AND x.overstayed),"
    "  (SELECT count(*) FROM ledger.card_events x, b WHERE x.school_id = $1::int"
    "     AND x.ts >= b.lo AND x.ts < b.hi)";

static const char *const s_figure_names[] = {
    "drills_held",       "evacuation_drills", "drill_months_overdue", "education_sessions",
    "meetings",          "agreements_signed", "rules_published",      "leadership_members",
    "outings_submitted", "outings_refused",   "outings_approved",     "outings_returned",
    "visitors",          "overstays",         "card_events",          NULL};

/* Adds one school's figures into sum (member by member). */
static int s_figures_school(s_q_t *q, json_t *sum)
{
    int rc, required = 0, met = 0;
    const char *p[5] = {q->id, q->s.tz, q->from, q->to, q->st->drill_kinds};
    PGresult *res = lg_pq_text(q->ctx, s_figures_sql, 5, p, &rc);
    if (!res)
        return rc;
    for (int i = 0; s_figure_names[i]; i++) {
        json_int_t v = atoll(PQgetvalue(res, 0, i));
        json_object_set_new(sum, s_figure_names[i],
                            json_integer(sc_json_int(sum, s_figure_names[i], 0) + v));
    }
    PQclear(res);
    if ((rc = lg_drill_months(q->ctx, q->st, &q->s, q->from_day, q->to_day, &required, &met)) < 0)
        return rc;
    json_object_set_new(sum, "drill_months_required",
                        json_integer(sc_json_int(sum, "drill_months_required", 0) + required));
    json_object_set_new(sum, "drill_months_met",
                        json_integer(sc_json_int(sum, "drill_months_met", 0) + met));
    return 0;
}

/* what: "figures" — this plugin's numbers for a school or a district over a period. */
static int s_figures(sc_ctx_t *ctx, lg_state_t *st, const json_t *req, json_t **reply)
{
    char err[256] = "";
    s_q_t q = {.ctx = ctx, .st = st};
    json_t *out = json_object();
    int rc;
    if (json_object_get(req, "district") && !json_object_get(req, "school")) {
        const char *p[1];
        PGresult *res = NULL;
        if ((rc = sc_check_code(req, "", "district", true, err, sizeof err)) < 0 ||
            (rc = s_period(&q, req, true, err, sizeof err)) < 0)
            goto out;
        p[0] = sc_json_str(req, "district");
        json_object_set_new(out, "district", json_string(p[0]));
        json_object_set_new(out, "schools", json_integer(0));
        res = lg_pq_text(ctx, "SELECT school FROM ledger.schools WHERE district = $1 ORDER BY 1", 1,
                         p, &rc);
        for (int i = 0; res && rc == 0 && i < PQntuples(res); i++) {
            if ((rc = lg_school_find(ctx, PQgetvalue(res, i, 0), &q.s)) < 0)
                break;
            snprintf(q.id, sizeof q.id, "%d", q.s.id);
            rc = s_figures_school(&q, out);
        }
        if (res)
            json_object_set_new(out, "schools", json_integer(PQntuples(res)));
        PQclear(res);
    } else if ((rc = s_school_request(&q, req, true, err, sizeof err)) == 0) {
        json_object_set_new(out, "school", json_string(q.s.code));
        rc = s_figures_school(&q, out);
    }
    if (rc == 0) {
        json_object_set_new(out, "from", json_string(q.from));
        json_object_set_new(out, "to", json_string(q.to));
    } else if (!*err) {
        snprintf(err, sizeof err, "database unavailable");
    }
out:
    if (rc < 0) {
        json_decref(out);
        return s_error(reply, err);
    }
    *reply = out;
    return 0;
}

/* what: "assessment" — a school's year-end assessment with its people, or a district's schools. */
static int s_assessment(sc_ctx_t *ctx, lg_state_t *st, const json_t *req, json_t **reply)
{
    char err[256] = "";
    s_q_t q = {.ctx = ctx, .st = st};
    json_t *out = NULL;
    int rc;
    if (json_object_get(req, "district") && !json_object_get(req, "school")) {
        if ((rc = sc_check_code(req, "", "district", true, err, sizeof err)) < 0 ||
            (rc = s_period(&q, req, true, err, sizeof err)) < 0)
            return s_error(reply, err);
        snprintf(q.s.district, sizeof q.s.district, "%s", sc_json_str(req, "district"));
        json_t *rows = json_array(), *keys = json_array();
        rc = s_fetch_district(&q, NULL, NULL, S_LIMIT_MAX, rows, keys);
        json_decref(keys);
        if (rc < 0) {
            json_decref(rows);
            return s_error(reply, "database unavailable");
        }
        json_t *cols = json_array();
        for (const char *const *c = c_district; *c; c++)
            json_array_append_new(cols, json_string(*c));
        *reply = json_pack("{s:s, s:s, s:s, s:o, s:o}", "district", q.s.district, "from", q.from,
                           "to", q.to, "columns", cols, "schools", rows);
        return 0;
    }
    if ((rc = s_school_request(&q, req, true, err, sizeof err)) < 0)
        return s_error(reply, err);
    if (!(out = lg_assess(ctx, st, &q.s, q.from, q.to, &rc)))
        return s_error(reply, "database unavailable");
    json_t *people = json_array(), *keys = json_array();
    rc = lg_assess_people(ctx, st, &q.s, q.from, q.to, NULL, S_LIMIT_MAX, people, keys);
    json_decref(keys);
    if (rc < 0) {
        json_decref(people);
        json_decref(out);
        return s_error(reply, "database unavailable");
    }
    json_t *cols = json_array();
    for (const char *const *c = c_people; *c; c++)
        json_array_append_new(cols, json_string(*c));
    json_object_set_new(out, "people_columns", cols);
    json_object_set_new(out, "people", people);
    *reply = out;
    return 0;
}

/* what: "on_site" — visitors inside now. */
static int s_on_site(sc_ctx_t *ctx, const json_t *req, json_t **reply)
{
    char err[256] = "";
    lg_school_t s;
    int rc;
    if ((rc = sc_check_code(req, "", "school", true, err, sizeof err)) < 0)
        return s_error(reply, err);
    if ((rc = s_load_school(ctx, sc_json_str(req, "school"), &s)) < 0)
        return s_error(reply, "database unavailable");
    char id[16];
    snprintf(id, sizeof id, "%d", s.id);
    const char *p[2] = {id, s.tz};
    PGresult *res = lg_pq_text(ctx,
                               "SELECT visit, name, organisation, purpose, host,"
                               "       ledger.local_time(entered_at, $2) AS entered_at,"
                               "       overstayed"
                               "  FROM ledger.visits WHERE school_id = $1::int"
                               "   AND exited_at IS NULL ORDER BY entered_at, visit",
                               2, p, &rc);
    if (!res)
        return s_error(reply, "database unavailable");
    *reply = json_pack("{s:s, s:o}", "school", s.code, "visitors", sc_pq_rows(res));
    PQclear(res);
    return 0;
}

/* what: "card_events" — the raw pupil card log, keyset-paged on (ts, card, direction). */
static int s_card_events(sc_ctx_t *ctx, lg_state_t *st, const json_t *req, json_t **reply)
{
    char err[256] = "", lim[16];
    s_q_t q = {.ctx = ctx, .st = st};
    int rc;
    if ((rc = s_school_request(&q, req, false, err, sizeof err)) < 0)
        return s_error(reply, err);
    int limit = (int)sc_json_int(req, "limit", st->page_limit);
    snprintf(lim, sizeof lim, "%d", limit + 1);
    const char *p[6] = {q.id, q.s.tz, q.from, q.to, sc_json_str(req, "after"), lim};
    PGresult *res = lg_pq_text(
        ctx,
        "SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') || '|'"
        "       || card || '|' || direction,"
        "       json_build_array(" LT(
            "ts") ", card,"
                  "                        CASE direction WHEN 1 THEN 'in' ELSE 'out' END)"
                  "  FROM ledger.card_events"
                  " WHERE school_id = $1::int AND ts >= " LO " AND ts < " HI
                  "   AND ($5::text IS NULL OR (ts, card COLLATE \"C\", direction)"
                  "        > (split_part($5, '|', 1)::timestamptz, split_part($5, '|', 2),"
                  "           split_part($5, '|', 3)::smallint))"
                  " ORDER BY ts, card COLLATE \"C\", direction LIMIT $6::int",
        6, p, &rc);
    if (!res) {
        snprintf(err, sizeof err, "%s",
                 rc == -EIO && sc_json_str(req, "after")
                     ? "after: not a cursor from a previous answer"
                     : "database unavailable");
        return s_error(reply, err);
    }
    json_t *rows = json_array();
    int n = PQntuples(res);
    for (int i = 0; i < n && i < limit; i++)
        json_array_append_new(rows, sc_pq_value(res, i, 1));
    json_t *next = n > limit ? json_string(PQgetvalue(res, limit - 1, 0)) : json_null();
    PQclear(res);
    *reply = json_pack("{s:s, s:[sss], s:o, s:o}", "school", q.s.code, "columns", "ts", "card",
                       "direction", "rows", rows, "next", next);
    return 0;
}

int lg_query(sc_ctx_t *ctx, lg_state_t *st, const json_t *req, json_t **reply)
{
    const char *what = sc_json_str(req, "what");
    if (what && strcmp(what, "ledger") == 0)
        return s_ledger(ctx, st, req, reply);
    if (what && strcmp(what, "figures") == 0)
        return s_figures(ctx, st, req, reply);
    if (what && strcmp(what, "assessment") == 0)
        return s_assessment(ctx, st, req, reply);
    if (what && strcmp(what, "on_site") == 0)
        return s_on_site(ctx, req, reply);
    if (what && strcmp(what, "card_events") == 0)
        return s_card_events(ctx, st, req, reply);
    for (size_t i = 0; what && i < S_NSECTIONS; i++)
        if (strcmp(what, s_sections[i].key) == 0)
            return s_one_section(ctx, st, &s_sections[i], req, reply);
    char list[1024];
    size_t off = (size_t)snprintf(list, sizeof list,
                                  "what: must be one of ledger, figures, assessment, on_site, "
                                  "card_events");
    for (size_t i = 0; i < S_NSECTIONS && off < sizeof list; i++)
        off += (size_t)snprintf(list + off, sizeof list - off, ", %s", s_sections[i].key);
    return s_error(reply, list);
}
