/* inspection_scheduler: occurrence expansion of RFC 5545 rules with seasons and closed days. */
#ifndef INSP_RRULE_H
#define INSP_RRULE_H

#include <safecampus/plugin.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A span of local dates, days since 1970-01-01, both ends included. */
struct rr_span {
    int64_t from, to;
};

/*
 * A seasonal rule: its own RRULE, used on the local dates the season covers, where it
 * replaces the base rule (replace) or adds to it. A date is covered when it lies in one of
 * `spans`; otherwise, when no span starts in the date's year, when its month-day lies in
 * md_from..md_to (month * 100 + day; the range may wrap the year end; 0: no yearly range).
 */
struct rr_season {
    const char *rrule;
    bool replace;
    int md_from, md_to;
    const struct rr_span *spans;
    size_t nspans;
};

/* What to expand: the base rule from DTSTART (local wall time in tzid), seasons, closed days. */
struct rr_spec {
    const char *tzid; /* NULL or unknown to libical: UTC */
    int year, month, day, hour, minute, second;
    const char *rrule;
    const struct rr_season *seasons;
    size_t nseasons;
    const struct rr_span *closed; /* no occurrence on these local dates */
    size_t nclosed;
};

/*
 * One occurrence: its instant, its local wall time as the rule gave it (in a DST gap, a time
 * the clock skips) and the zone's UTC offset at the instant.
 */
struct rr_occ {
    sc_time_t at;
    int64_t local_day; /* days since 1970-01-01 */
    int hour, minute, second;
    int offset; /* seconds east of UTC */
    int source; /* -1: the base rule; otherwise the index of the season whose rule gave it */
};

/* Makes libical report errors instead of aborting on them (its build may choose either). */
void rr_init(void);

/* Frees libical's cache of time zones (at the plugin's end: this plugin is its only user). */
void rr_fini(void);

/*
 * Checks an RRULE value ("FREQ=WEEKLY;BYDAY=MO", an "RRULE:" prefix allowed) with libical.
 * Returns 0, or -EINVAL with the rule that failed in err ("does not parse", "FREQ is
 * required", "FREQ must be HOURLY or longer"). Pure and thread-safe.
 */
int rr_check(const char *rrule, char *err, size_t errlen);

/* True when libical knows the time zone. */
bool rr_tz_known(const char *tzid);

/*
 * The occurrences of spec in (after, until], earliest first, at most max, with equal
 * instants merged. *out is a new array (free()) of *n entries. *exhausted (may be NULL) is
 * set when every rule ended (UNTIL or COUNT) before `until`: nothing comes later.
 * Local times that do not exist (a DST gap) take the offset before the gap; local times
 * that occur twice take the first (RFC 5545, 3.3.5). Returns 0, -EINVAL when a rule does
 * not parse, -ENOMEM.
 */
int rr_expand(const struct rr_spec *spec, sc_time_t after, sc_time_t until, size_t max,
              struct rr_occ **out, size_t *n, bool *exhausted);

/* The UTC offset (seconds east) of tzid at instant `at`; 0 for an unknown zone. */
int rr_offset(const char *tzid, sc_time_t at);

/* Writes `at` as RFC 3339 local time with its offset ("2026-06-15T08:00:00+08:00"). */
char *rr_format_local(sc_time_t at, int offset, char *buf, size_t len);

/* Civil date of days since 1970-01-01. */
void rr_civil(int64_t days, int *year, int *month, int *day);

/* Parses "MM-DD" into month * 100 + day. Returns 0 or -EINVAL. */
int rr_parse_md(const char *s, int *md);

#endif
