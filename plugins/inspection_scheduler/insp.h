/* inspection_scheduler: declarations shared by the plugin's source files. */
#ifndef INSP_H
#define INSP_H

#include "rrule.h"

#include <safecampus/plugin.h>
#include <safecampus/util.h>

#include <stdbool.h>

#define INSP_NAME "inspection_scheduler"

/* SQL text of a timestamptz column as RFC 3339 UTC (sessions run in UTC). */
#define INSP_TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

/* Searching for a schedule's next occurrence looks this far ahead before it asks again. */
#define INSP_HORIZON (400 * 86400 * SC_USEC_PER_SEC)

/* The plugin's state: its config, read once in init. */
struct insp {
    int64_t due_within, grace;             /* seconds */
    int64_t adhoc_due_within, adhoc_grace; /* seconds */
    int default_hour, default_minute;
    char *adhoc_role;
    char *hazard_risk;
    bool require_all_items;
    json_t *seasons;          /* [{season, from, to}] */
    json_t *district_seasons; /* [{district, season, from, to}] */
    json_t *alert_levels;     /* ["blue", …] */
};

/* A school's time zone and district as the directory gives them. */
struct insp_school {
    char tz[64];
    char district[SC_CODE_MAX + 1]; /* "" when unknown */
};

/* Looks a school up; unknown schools get the daemon's default time zone. */
void insp_school(sc_ctx_t *ctx, const char *school, struct insp_school *out);

/* A schedule ready to expand; everything it points to is owned by it. */
struct insp_spec {
    struct rr_spec rr;
    struct rr_season *seasons;
    struct rr_span *closed;
    json_t *hold; /* keeps the strings rr borrows */
};

/*
 * Builds the expansion of one schedule row (an object with school, rrule, dtstart, seasons,
 * exdates, skip_closed) for a school with `info`: named seasons resolved for its district,
 * closed days and exception dates gathered. Returns 0; -ENOENT with the season's name in
 * err when a named season is unknown; -EAGAIN/-EIO on database errors; -ENOMEM.
 */
int insp_spec_load(sc_ctx_t *ctx, const struct insp *st, const json_t *sched,
                   const struct insp_school *info, struct insp_spec *spec, char *err,
                   size_t errlen);
void insp_spec_free(struct insp_spec *spec);

/*
 * Resolves a named season for a district into md range and year spans (allocated into
 * *spans, free()). Returns 0, -ENOENT when no config or district event names it, or
 * -EAGAIN/-EIO/-ENOMEM.
 */
int insp_season_resolve(sc_ctx_t *ctx, const struct insp *st, const char *district,
                        const char *name, int *md_from, int *md_to, struct rr_span **spans,
                        size_t *nspans);

/*
 * Parses a season's from/to: both "MM-DD" (every year: *md_from and *md_to set, *span_ok false)
 * or both "YYYY-MM-DD" (one span, *span_ok true). Returns 0 or -EINVAL.
 */
int insp_parse_range(const char *from, const char *to, int *md_from, int *md_to,
                     struct rr_span *span, bool *span_ok);

/* The local date (days since 1970-01-01) of `at` in a zone. */
int64_t insp_local_day(const char *tz, sc_time_t at);

/* Answers a query; see the README for what each `what` returns. */
int insp_query(sc_ctx_t *ctx, void *state, const json_t *req, json_t **reply);

#endif
