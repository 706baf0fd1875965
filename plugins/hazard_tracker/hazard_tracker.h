/* hazard_tracker internals shared by the plugin's source files (hidden: not part of any ABI). */
#ifndef HAZARD_TRACKER_H
#define HAZARD_TRACKER_H

#include <safecampus/plugin.h>
#include <safecampus/util.h>

#include <stdbool.h>

#define HT_NAME "hazard_tracker"

/* The plugin's config, read once by init. */
typedef struct ht_config {
    int deadline_days_general;
    int deadline_days_major;
    int64_t reminder_interval; /* seconds; 0: no reminders */
    bool verifier_must_differ;
    bool require_commitments;
    bool report_major_to_district;
    bool overdue_major_to_district;
} ht_config_t;

/* A report waiting in the batch: where its row starts, and what its outcome needs of it. */
typedef struct ht_waiting {
    size_t at;
    int64_t event;
    json_t *data, *origin; /* references held while it waits */
    sc_time_t occurred_at, found_at;
    char school[SC_CODE_MAX + 1], hazard[SC_CODE_MAX + 1], district[SC_CODE_MAX + 1];
    char reporter[SC_CODE_MAX + 1];
    char when[SC_TIME_LEN], now[SC_TIME_LEN]; /* the event's occurred_at; the clock's */
} ht_waiting_t;

/*
 * The plugin's state: its config, and the reports of the batch not written yet: their
 * rows as ht_report reads them (JSON objects in `rows`, each followed by a comma, from
 * rows.p + waiting[i].at; see s_reported) and their keys "school/hazard".
 */
typedef struct ht_state {
    ht_config_t cfg;
    sc_pqbuf_t rows;
    sc_pqbuf_t send; /* the JSON array of the rows the statement is given */
    ht_waiting_t *waiting;
    size_t nwaiting, cap_waiting;
    json_t *pending_keys;
} ht_state_t;

/* ---- validate.c: validators of the types senders may send ---- */
int ht__validate_reported(const sc_event_t *ev, char *detail, size_t dlen);
int ht__validate_assigned(const sc_event_t *ev, char *detail, size_t dlen);
int ht__validate_rectified(const sc_event_t *ev, char *detail, size_t dlen);
int ht__validate_verified(const sc_event_t *ev, char *detail, size_t dlen);
int ht__validate_withdrawn(const sc_event_t *ev, char *detail, size_t dlen);
int ht__validate_commitments(const sc_event_t *ev, char *detail, size_t dlen);

/*
 * The origin of a report in normal form: a new reference to an object
 * {"kind": "person"|"inspection"|"external", …members given}. `origin` may be
 * NULL (a person's report), a kind string, or an object (already validated).
 */
json_t *ht__origin_normal(const json_t *origin);

/* ---- handle.c: the state machine ---- */
int ht__handle(sc_ctx_t *ctx, ht_state_t *st, const sc_event_t *ev);

/*
 * The batch's end: with keep, writes the reports still waiting and raises what
 * they call for; without, drops them. Returns 0 or -errno; nothing waits after.
 */
int ht__end_batch(sc_ctx_t *ctx, ht_state_t *st, bool keep);

/*
 * Prepares the statements of the handle path on the plugin's connection (init
 * runs again after every reconnect); those it already has are kept. Call from
 * init, outside a transaction. Returns 0 or -errno (-EAGAIN: the database).
 */
int ht__prepare(sc_ctx_t *ctx);

/* ---- tick.c: overdue and reminders ---- */
int ht__tick(sc_ctx_t *ctx, const ht_config_t *cfg, sc_time_t now, sc_time_t *next);

/* ---- query.c: open, hazard, figures, ledger ---- */
int ht__query(sc_ctx_t *ctx, const ht_config_t *cfg, const json_t *req, json_t **reply);

/* ---- shared helpers (handle.c) ---- */

/*
 * Runs sql with params and returns the result (caller PQclear()s), or NULL
 * with *rc set and the error logged.
 */
PGresult *ht__exec(sc_ctx_t *ctx, const char *sql, int n, const char *const *params, int *rc);

/*
 * Appends one row to hazard.history. `event` 0 means none (raised by tick);
 * `from`, `actor` may be NULL; `data` is borrowed (NULL: {}). Returns 0 or -errno.
 */
int ht__history(sc_ctx_t *ctx, const char *school, const char *hazard, sc_time_t at, int64_t event,
                const char *action, const char *from, const char *to, const char *actor, int round,
                const json_t *data);

#endif
