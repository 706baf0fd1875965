/* ledger plugin internals shared between its source files (hidden: only the entry is exported). */
#ifndef SC_PLUGIN_LEDGER_H
#define SC_PLUGIN_LEDGER_H

#include <safecampus/plugin.h>
#include <safecampus/util.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LG_NAME "ledger"

/* Longest free text accepted in a record (titles, measures, plans, minutes). */
#define LG_TEXT_MAX 4000
#define LG_SHORT_MAX 200
#define LG_ITEMS_MAX 200
#define LG_ROSTER_MAX 2000

/*
 * One term of the school year. Recurring terms hold month*100+day in from/to and
 * may wrap the new year (09-01 … 01-20); absolute ones hold days since 1970.
 */
struct lg_term {
    bool absolute;
    int64_t from, to;
};

/* The terms of one district (district NULL: the default calendar). */
struct lg_calendar {
    char *district;
    struct lg_term *terms;
    size_t nterms;
};

/* The plugin's state: its config, read once in init. Nothing here is a deadline. */
typedef struct lg_state {
    struct lg_calendar *calendars; /* [0] is the default */
    size_t ncalendars;
    char *drill_kinds; /* JSON array text, for SQL */
    int drill_min_per_month;
    int drill_min_term_days;
    bool drill_check;
    int outing_notice_days;
    json_t *approver_roles;
    int64_t outing_return_grace;
    int64_t outing_reminder_interval;
    int outing_reminder_max;
    char closing_time[9]; /* "HH:MM" */
    int64_t late_visit_grace;
    json_t *agreement_directory_roles;
    int education_per_month;
    json_t *weights;   /* component → weight */
    json_t *penalties; /* incident severity → points */
    int page_limit;
    bool rescheduled; /* schools without a drill check were looked at again since start */
    /* Pupils' card events of the open batch, written together at its end (lg_end_batch):
     * the text of four arrays (times, schools, directions, cards) as they grow, and how many.
     * Codes and RFC 3339 times hold nothing an array literal would need escaped. */
    sc_pqbuf_t card_cols[4];
    size_t ncards;
    /* The schools whose row the plugin knows is there: kept from batch to batch, forgotten
     * when a batch is rolled back (it may have registered them) or finds one missing. */
    json_t *card_schools;
    /* Visitors' entries of the open batch not written yet (s_visit_wait in records.c), and
     * their keys "school/visit". */
    json_t *visits;
    json_t *visit_keys;
} lg_state_t;

/* The batch is over: write the deferred card events (keep) or drop them. */
int lg_end_batch(sc_ctx_t *ctx, void *state, bool keep);

/* A school as the plugin keeps it. */
typedef struct lg_school {
    int id;
    char code[SC_CODE_MAX + 1];
    char district[SC_CODE_MAX + 1]; /* "" when unknown */
    char tz[128];
} lg_school_t;

/* ---- validate.c ---- */
extern const struct sc_type lg_types[];

/* ---- terms.c ---- */
/* Parses the config's terms and district_terms into st. Returns 0 or -EINVAL (detail logged). */
int lg_terms_load(sc_ctx_t *ctx, lg_state_t *st, const json_t *terms, const json_t *district_terms);
void lg_terms_free(lg_state_t *st);
/* Whether a day (days since 1970) is in term for a district (NULL: default calendar). */
bool lg_in_term(const lg_state_t *st, const char *district, int64_t day);
/* The number of in-term days of the month starting at month_first, and the last of them. */
int lg_month_term_days(const lg_state_t *st, const char *district, int64_t month_first,
                       int64_t *last_term_day);
/* First day of the month after the one holding `day`, and of the month holding it. */
int64_t lg_month_next(int64_t day);
int64_t lg_month_first(int64_t day);
/*
 * The first month at or after month_first whose in-term days reach the configured
 * minimum (checked for the drill minimum), within three years: 0 with *month and *due_day
 * (the day after its last in-term day), or -ENOENT.
 */
int lg_next_checked_month(const lg_state_t *st, const char *district, int64_t month_first,
                          int64_t *month, int64_t *due_day);

/* ---- records.c ---- */
int lg_handle(sc_ctx_t *ctx, lg_state_t *st, const sc_event_t *ev);
/* Finds the school (registering it on first sight). 0, -ENOENT if the event names none, or -errno.
 */
int lg_school_get(sc_ctx_t *ctx, lg_state_t *st, const char *code, const char *district,
                  sc_time_t seen_at, lg_school_t *out);
/* Looks a school up without registering it: 0, -ENOENT or -errno. */
int lg_school_find(sc_ctx_t *ctx, const char *code, lg_school_t *out);
/* Sets a school's next drill check from the month starting at month_first (days). */
int lg_drill_schedule(sc_ctx_t *ctx, lg_state_t *st, const lg_school_t *s, int64_t month_first);

/* ---- tick.c ---- */
int lg_tick(sc_ctx_t *ctx, lg_state_t *st, sc_time_t now, sc_time_t *next);

/* ---- query.c ---- */
int lg_query(sc_ctx_t *ctx, lg_state_t *st, const json_t *req, json_t **reply);

/* ---- assess.c ---- */
/*
 * The year-end assessment of one school over [from, to] (local dates): a new object
 * {"school","from","to","score","components":[…],"incidents":{…},"journal":bool}. NULL with
 * *rc on error.
 */
json_t *lg_assess(sc_ctx_t *ctx, lg_state_t *st, const lg_school_t *s, const char *from,
                  const char *to, int *rc);
/* Rows [component, measure, done, expected, rate, weight, points] of an assessment. */
json_t *lg_assess_rows(const json_t *assessment, const json_t *penalties);
/* Per responsible person figures, keyset-paged: appends rows and keys; returns the count or -errno.
 */
int lg_assess_people(sc_ctx_t *ctx, lg_state_t *st, const lg_school_t *s, const char *from,
                     const char *to, const char *after, int limit, json_t *rows, json_t *keys);
/* The number of counted months of [from, to] and how many of them met the drill minimum. */
int lg_drill_months(sc_ctx_t *ctx, lg_state_t *st, const lg_school_t *s, int64_t from, int64_t to,
                    int *required, int *met);

/* ---- query.c: shared by the queries ---- */
/*
 * Runs a read statement whose parameters are all declared text (so a statement may leave some
 * unused; every use casts). Returns the result (caller PQclear()s) or NULL with *rc, logged.
 */
PGresult *lg_pq_text(sc_ctx_t *ctx, const char *sql, int n, const char *const *params, int *rc);
/*
 * The people the directory holds in the configured agreement roles at the school, as JSON text
 * [{"role","party","name"}] for SQL; malloc'd, NULL on error.
 */
char *lg_directory_parties(sc_ctx_t *ctx, lg_state_t *st, const char *school);

/*
 * Who must sign a term's agreements and who did. Parameters: $1 school id, $3 from, $4 to
 * (dates), $7 the directory parties (lg_directory_parties). The terms of a period are those with
 * an agreement signed or a roster declared in it; a role without a roster for a term takes its
 * signers from the directory.
 */
#define LG_AGREEMENT_CTE                                                                           \
    "WITH terms AS (SELECT term FROM ledger.agreements WHERE school_id = $1::int"                  \
    "                  AND signed_on BETWEEN $3::date AND $4::date"                                \
    "               UNION SELECT term FROM ledger.agreement_roster WHERE school_id = $1::int"      \
    "                  AND declared_on BETWEEN $3::date AND $4::date),"                            \
    " dir AS (SELECT d->>'role' AS party_role, d->>'party' AS party, d->>'name' AS name"           \
    "           FROM jsonb_array_elements($7::jsonb) d),"                                          \
    " req AS (SELECT r.term, r.party_role, r.party FROM ledger.agreement_roster r"                 \
    "           JOIN terms t ON t.term = r.term WHERE r.school_id = $1::int"                       \
    "         UNION SELECT t.term, d.party_role, d.party FROM terms t CROSS JOIN dir d"            \
    "          WHERE NOT EXISTS (SELECT 1 FROM ledger.agreement_roster r"                          \
    "                             WHERE r.school_id = $1::int AND r.term = t.term"                 \
    "                               AND r.party_role = d.party_role)),"                            \
    " sig AS (SELECT DISTINCT a.term, a.party_role, a.party FROM ledger.agreements a"              \
    "           JOIN terms t ON t.term = a.term WHERE a.school_id = $1::int) "

/* ---- small shared helpers (records.c) ---- */
/* Emits "<domain>.rejected" {event, type, key, reason} for ev. */
int lg_reject(sc_ctx_t *ctx, const sc_event_t *ev, const char *type, const char *key_name,
              const char *key, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* Runs a statement whose result is not needed. */
int lg_exec(sc_ctx_t *ctx, const char *sql, int n, const char *const *params);

#endif
