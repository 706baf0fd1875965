/* hazard_tracker tick: hazard.overdue once per deadline, then hazard.reminder until rectified. */
#include "hazard_tracker.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Columns of the due hazards s_tick reads. */
enum {
    C_SCHOOL,
    C_HAZARD,
    C_DISTRICT,
    C_RISK,
    C_TITLE,
    C_CATEGORY,
    C_LOCATION,
    C_ASSIGNEE,
    C_ROUND,
    C_DEADLINE,
    C_OVERDUE_AT,
    C_NEXT_REMINDER,
    C_SENT,
    C_STATE,
};

/* One thing due: the overdue (n == 0) or the n-th reminder of a hazard (row). */
typedef struct s_due {
    sc_time_t at;
    int row;
    int n;
} s_due_t;

/* A hazard passes its deadline the second after it (deadlines are inclusive). */
#define S_GRACE SC_USEC_PER_SEC

static int s_due_cmp(const void *a, const void *b)
{
    const s_due_t *x = a, *y = b;
    if (x->at != y->at)
        return x->at < y->at ? -1 : 1;
    if (x->row != y->row)
        return x->row - y->row;
    return x->n - y->n;
}

static const char *s_val(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

/*
 * Emits one due thing and writes it to the history: the overdue with its
 * deadline and risk (escalate_to says who must hear of it), or a reminder
 * with the whole days it is overdue.
 */
static int s_raise(sc_ctx_t *ctx, const ht_config_t *cfg, const PGresult *res, const s_due_t *due,
                   sc_time_t overdue_at)
{
    const char *school = s_val(res, due->row, C_SCHOOL);
    const char *hazard = s_val(res, due->row, C_HAZARD);
    const char *risk = s_val(res, due->row, C_RISK);
    int round = atoi(s_val(res, due->row, C_ROUND));
    bool major = strcmp(risk, "major") == 0;
    sc_time_t deadline = sc_pq_time(res, due->row, C_DEADLINE, 0);
    char deadline_s[SC_TIME_LEN], id[240];
    json_int_t days = (json_int_t)((due->at - overdue_at) / (86400 * SC_USEC_PER_SEC));
    int rc = -ENOMEM;

    json_t *data = json_pack(
        "{s:s, s:s, s:s, s:I, s:s, s:s, s:s?, s:s?, s:s?, s:s, s:i}", "hazard", hazard, "deadline",
        sc_time_format(deadline, deadline_s), "risk", risk, "days_overdue", days, "title",
        s_val(res, due->row, C_TITLE), "category", s_val(res, due->row, C_CATEGORY), "location",
        s_val(res, due->row, C_LOCATION), "assignee", s_val(res, due->row, C_ASSIGNEE), "district",
        s_val(res, due->row, C_DISTRICT), "escalate_to",
        major && cfg->overdue_major_to_district ? "district" : "school", "round", round);
    if (!data)
        return rc;
    if (due->n)
        json_object_set_new(data, "reminder", json_integer(due->n));
    const char *type = due->n ? "hazard.reminder" : "hazard.overdue";
    if (due->n)
        snprintf(id, sizeof id, "reminder:%s:%s:%d:%d", school, hazard, round, due->n);
    else
        snprintf(id, sizeof id, "overdue:%s:%s:%d", school, hazard, round);
    if ((rc = sc_emit(ctx, &(sc_emit_t){.type = type,
                                        .school = school,
                                        .district = s_val(res, due->row, C_DISTRICT),
                                        .id = id,
                                        .occurred_at = due->at,
                                        .data = data})) == 0)
        rc = ht__history(ctx, school, hazard, due->at, 0, due->n ? "reminder" : "overdue",
                         s_val(res, due->row, C_STATE), s_val(res, due->row, C_STATE), NULL, round,
                         data);
    json_decref(data);
    return rc;
}

/* Writes back what was raised for one hazard. */
static int s_store(sc_ctx_t *ctx, const PGresult *res, int row, sc_time_t overdue_at,
                   sc_time_t next_reminder, int sent)
{
    char o[SC_TIME_LEN], r[SC_TIME_LEN], n[16];
    snprintf(n, sizeof n, "%d", sent);
    const char *p[] = {s_val(res, row, C_SCHOOL), s_val(res, row, C_HAZARD),
                       sc_time_format(overdue_at, o),
                       next_reminder == SC_TIME_NEVER ? NULL : sc_time_format(next_reminder, r), n};
    int rc;
    PGresult *r2 = ht__exec(ctx,
                            "UPDATE hazard.hazards SET overdue_at = $3, next_reminder_at = $4,"
                            "  reminders_sent = $5"
                            " WHERE school = $1 AND hazard = $2",
                            5, p, &rc);
    PQclear(r2);
    return rc;
}

/*
 * Runs one of the tick's statements, planned at each run (sc_pq_exec_fresh): a plan kept from
 * when the table was small would read every open hazard. Like ht__exec() otherwise.
 */
static PGresult *s_fresh(sc_ctx_t *ctx, const char *sql, int n, const char *const *params, int *rc)
{
    PGresult *res = sc_pq_exec_fresh(sc_db(ctx), sql, n, params, rc);
    if (!res)
        SC_LOG_ERR(ctx, "statement failed: %s", PQerrorMessage(sc_db(ctx)));
    return res;
}

/* The earliest instant anything is due, from the tables. */
static int s_next(sc_ctx_t *ctx, sc_time_t *next)
{
    int rc;
    PGresult *res =
        s_fresh(ctx,
                "SELECT least("
                "  (SELECT deadline + interval '1 second' FROM hazard.hazards"
                "    WHERE state IN ('reported', 'assigned') AND overdue_at IS NULL"
                "    ORDER BY deadline LIMIT 1),"
                "  (SELECT next_reminder_at FROM hazard.hazards"
                "    WHERE state IN ('reported', 'assigned') AND next_reminder_at IS NOT NULL"
                "    ORDER BY next_reminder_at LIMIT 1))",
                0, NULL, &rc);
    if (!res)
        return rc;
    *next = sc_pq_time(res, 0, 0, SC_TIME_NEVER);
    PQclear(res);
    return 0;
}

/*
 * Raises everything due at or before `now`, however far the clock jumped: each
 * unrectified hazard past its deadline gets its hazard.overdue once (at the
 * second after the deadline), then a hazard.reminder every reminder_interval,
 * each with its own due instant as occurred_at and in time order across
 * hazards — as if the days had passed one by one.
 */
int ht__tick(sc_ctx_t *ctx, const ht_config_t *cfg, sc_time_t now, sc_time_t *next)
{
    char now_s[SC_TIME_LEN];
    const char *p[] = {sc_time_format(now, now_s)};
    int64_t step = cfg->reminder_interval * SC_USEC_PER_SEC;
    s_due_t *dues = NULL;
    sc_time_t *overdue = NULL, *reminder = NULL;
    int *sent = NULL;
    size_t ndues = 0, cap = 0;
    int rc;

    /* Most ticks find nothing due: the earliest due instant says so from two index entries. */
    if ((rc = s_next(ctx, next)) < 0 || *next > now)
        return rc;
    /* The deadline compared as the column itself, so hazards_due finds the due ones instead of
     * a scan of every hazard ever reported at each tick. */
    PGresult *res =
        s_fresh(ctx,
                "SELECT school, hazard, district, risk, title, category, location, assignee, round,"
                "       deadline, overdue_at, next_reminder_at, reminders_sent, state"
                "  FROM hazard.hazards"
                " WHERE state IN ('reported', 'assigned')"
                "   AND ((overdue_at IS NULL AND deadline <= $1::timestamptz - interval '1 second')"
                "        OR next_reminder_at <= $1)"
                " ORDER BY school, hazard FOR UPDATE",
                1, p, &rc);
    if (!res)
        return rc;
    int rows = PQntuples(res);
    rc = -ENOMEM;
    if (rows > 0 && (!(overdue = calloc((size_t)rows, sizeof *overdue)) ||
                     !(reminder = calloc((size_t)rows, sizeof *reminder)) ||
                     !(sent = calloc((size_t)rows, sizeof *sent))))
        goto out;
    for (int i = 0; i < rows; i++) {
        bool raise_overdue = PQgetisnull(res, i, C_OVERDUE_AT);
        overdue[i] = raise_overdue ? sc_pq_time(res, i, C_DEADLINE, 0) + S_GRACE
                                   : sc_pq_time(res, i, C_OVERDUE_AT, 0);
        /* No interval (reminders switched off since): the stored one is dropped. */
        reminder[i] = !step           ? SC_TIME_NEVER
                      : raise_overdue ? overdue[i] + step
                                      : sc_pq_time(res, i, C_NEXT_REMINDER, SC_TIME_NEVER);
        sent[i] = atoi(PQgetvalue(res, i, C_SENT));
        for (int n = raise_overdue ? 0 : sent[i] + 1;; n++) {
            sc_time_t at = n == 0 ? overdue[i] : reminder[i];
            if (n > 0 && (!step || at > now))
                break;
            if (ndues == cap) {
                size_t ncap = cap ? cap * 2 : 64;
                s_due_t *grown = realloc(dues, ncap * sizeof *dues);
                if (!grown)
                    goto out;
                dues = grown;
                cap = ncap;
            }
            dues[ndues++] = (s_due_t){.at = at, .row = i, .n = n};
            if (n > 0) {
                reminder[i] += step;
                sent[i] = n;
            }
        }
    }
    if (ndues > 1)
        qsort(dues, ndues, sizeof *dues, s_due_cmp);
    for (size_t k = 0; k < ndues; k++)
        if ((rc = s_raise(ctx, cfg, res, &dues[k], overdue[dues[k].row])) < 0)
            goto out;
    for (int i = 0; i < rows; i++)
        if ((rc = s_store(ctx, res, i, overdue[i], reminder[i], sent[i])) < 0)
            goto out;
    rc = s_next(ctx, next);
out:
    PQclear(res);
    free(dues);
    free(overdue);
    free(reminder);
    free(sent);
    return rc;
}
