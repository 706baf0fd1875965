/* health_absence: declarations shared by the plugin's source files (not part of any contract). */
#ifndef HEALTH_ABSENCE_H
#define HEALTH_ABSENCE_H

#include <safecampus/plugin.h>
#include <safecampus/util.h>

#include <stdbool.h>
#include <stddef.h>

/*
 * In SQL, health.rfc3339(timestamptz) and health.ymd(date) (001_health.sql)
 * write times and dates for replies and events whatever DateStyle says.
 */

#define HA_TZ_MAX 64
#define HA_NAME_MAX 64

/* ---- validate.c: the pure part (vocabularies, validators, syndromes) ---- */

extern const char *const ha_reasons[];  /* illness, personal, unknown */
extern const char *const ha_symptoms[]; /* the fixed vocabulary of DESIGN.md */
extern const char *const ha_syndrome_names[];

int ha_validate_morning_check(const sc_event_t *ev, char *detail, size_t dlen);
int ha_validate_reported(const sc_event_t *ev, char *detail, size_t dlen);
int ha_validate_traced(const sc_event_t *ev, char *detail, size_t dlen);

/* Most syndromes one case can show. */
#define HA_SYNDROMES_MAX 8

/*
 * Groups symptoms (an array of vocabulary words, borrowed; NULL for none) into
 * syndromes: writes up to HA_SYNDROMES_MAX names into out (static strings)
 * and returns how many; *primary gets the one "similar symptoms" rules group
 * by (jaundice, rash, eye, gastrointestinal, respiratory, fever, in that
 * order of precedence), or NULL when none applies.
 */
size_t ha_syndromes(const json_t *symptoms, const char **out, const char **primary);

/* The family a syndrome or disease key is compared by when one cluster inhibits another. */
const char *ha_family(const char *syndrome);

/* ---- ears.c: CDC EARS C1, C2, C3 (pure) ---- */

enum ha_ears_alg { HA_EARS_C1, HA_EARS_C2, HA_EARS_C3, HA_EARS_N };

struct ha_ears_result {
    double observed;  /* the value assessed, series[n-1] */
    double expected;  /* baseline mean (C3: the C2 mean at t) */
    double sd;        /* baseline standard deviation after the floor */
    double statistic; /* C1(t), C2(t) or C3(t) */
    double upper;     /* the largest observed value that would not alarm */
    bool alarm;       /* statistic > threshold */
};

extern const char *const ha_ears_names[]; /* "C1", "C2", "C3" */

/* How many values (oldest first, the day assessed last) an algorithm needs. */
size_t ha_ears_needed(enum ha_ears_alg alg, int baseline);

/*
 * Runs one EARS algorithm on series[0..n-1] (oldest first; the day assessed is
 * the last) with `baseline` reference days, threshold z and a floor min_sigma
 * on the standard deviation. Returns 0, or -ERANGE when the series is shorter
 * than ha_ears_needed(), -EINVAL for a bad parameter.
 */
int ha_ears(enum ha_ears_alg alg, const double *series, size_t n, int baseline, double z,
            double min_sigma, struct ha_ears_result *out);

/* The standard normal quantile: qnorm(p) for 0 < p < 1 (NAN otherwise). */
double ha_qnorm(double p);

/* ---- health_absence.c: state and shared helpers ---- */

enum ha_scope { HA_SCOPE_SCHOOL, HA_SCOPE_GRADE, HA_SCOPE_CLASS };
extern const char *const ha_scope_names[];

struct ha_rule {
    char name[HA_NAME_MAX];
    enum ha_scope scope;
    char syndrome[HA_NAME_MAX]; /* "*" (each similar-symptom syndrome), a syndrome, or "" */
    char disease[HA_NAME_MAX];  /* a disease code, or "" */
    int cases;                  /* raised at cases >= this */
    int window_days;            /* within this many consecutive days */
};

/* How many time zones' "today" the plugin remembers (a district's schools share one or two). */
#define HA_TODAY_CACHED 8

/* The local date in a zone, valid for the instants [from, until): its midnights. */
struct ha_today {
    char tz[HA_TZ_MAX];
    char date[11];
    sc_time_t from, until;
};

/* An absence waiting in the batch: where its row starts, and its event as its alerts need it. */
struct ha_waiting {
    size_t at;
    int64_t event;
    sc_time_t occurred_at;
    char school[SC_CODE_MAX + 1];
    char district[SC_CODE_MAX + 1]; /* empty: none */
    char tz[HA_TZ_MAX];
};

struct ha_state {
    char cutoff[8];         /* "17:00" */
    char report_time[8];    /* "18:00" */
    char retention_time[8]; /* "03:00" */
    char school_days[40];   /* "{1,2,3,4,5}", ISO weekdays as a SQL int[] */
    int n_school_days;
    struct ha_rule *rules; /* widest scope first */
    size_t n_rules;
    /* What the rules count, as ha_reported takes it: the diseases and the syndromes
     * rules name (JSON arrays), and whether one counts similar symptoms ("true"). */
    char *rule_diseases, *rule_syndromes;
    const char *rule_similar;
    int quiet_days;
    bool ears_on[HA_EARS_N];
    int ears_baseline;
    double ears_z[HA_EARS_N]; /* the threshold per algorithm */
    double ears_min_sigma;
    bool ears_rate;
    int64_t retention_secs;
    bool anonymise;
    struct ha_today today[HA_TODAY_CACHED];
    size_t today_next; /* the slot a new zone takes */
    /* Absences registered by this batch and not written yet: each one's row as the
     * ha_reported statement reads it (a JSON object in `rows`, followed by a comma, from
     * rows.p + waiting[i].at), what its alerts need of its event, and the keys
     * "school/student/date" of them all: see s_on_reported. Empty outside a batch. */
    sc_pqbuf_t rows;
    sc_pqbuf_t send; /* the JSON array of the rows one statement is given */
    struct ha_waiting *waiting;
    size_t nwaiting, cap_waiting;
    json_t *pending_keys;
};

/* Fewest absences a statement is given once one had to stop early. */
#define HA_FLUSH_WINDOW_MIN 8

/*
 * How many of the `left` absences still waiting the next ha_reported statement is given,
 * after one that was given `given` and wrote the first `written` of them (0 and 0 before
 * the first). A statement stops before a counted case that must wait for one written
 * just before it, and whatever it was given after that is sent again: on an outbreak's
 * day, a batch of n cases of one school would have been sent whole n times. So the first
 * statement is given everything (a batch with nothing to wait for goes in one); after
 * one stopped early, twice what it wrote (at least HA_FLUSH_WINDOW_MIN); after one that
 * wrote all it was given, twice as many. Every row is then sent at most a few times.
 */
static inline size_t ha_flush_window(size_t given, size_t written, size_t left)
{
    size_t next = given == 0 ? left : written < given ? 2 * written : 2 * given;
    if (next < HA_FLUSH_WINDOW_MIN)
        next = HA_FLUSH_WINDOW_MIN;
    return next < left ? next : left;
}

/*
 * A statement the plugin prepares on its connection in init (the core runs init again
 * on every new connection) and runs by name: the handle path runs a few statements per
 * event, and planning them each time cost more than running them. Arrays end with a NULL
 * name. Names start with "ha_"; parameters are text, typed by casts in the SQL.
 */
struct ha_stmt {
    const char *name;
    const char *sql;
};

/*
 * Prepares those of stmts the connection does not hold yet (a reload runs init again on
 * the same connection). Returns 0 or -errno.
 */
int ha_prepare(sc_ctx_t *ctx, const struct ha_stmt *stmts);

/* Runs a statement ha_prepare() prepared (text parameters); NULL with *rc set on failure. */
PGresult *ha_run(sc_ctx_t *ctx, const char *name, int n, const char *const *params, int *rc);

/* Runs sql on the plugin's connection (text parameters); NULL with *rc set on failure. */
PGresult *ha_exec(sc_ctx_t *ctx, const char *sql, int n, const char *const *params, int *rc);

/*
 * The school's time zone into tz (HA_TZ_MAX bytes): from the directory, else
 * the daemon's default. Never fails.
 */
void ha_school_tz(sc_ctx_t *ctx, const char *school, char *tz);

/* The local date (YYYY-MM-DD, 11 bytes) of instant t in tz. Returns 0 or -errno. */
int ha_local_date(sc_ctx_t *ctx, sc_time_t t, const char *tz, char *date);

/*
 * The first instant at local time hhmm on a day of `days` (a SQL int[] of ISO
 * weekdays) on or after local date `from` that is later than `after`.
 * Returns 0 or -errno.
 */
int ha_next_local(sc_ctx_t *ctx, const char *from, const char *hhmm, const char *tz,
                  const char *days, sc_time_t after, sc_time_t *out);

/* Emits type with data (steals data, even on failure). Returns 0 or -errno. */
int ha_emit(sc_ctx_t *ctx, const char *type, const char *school, const char *district,
            const char *id, sc_time_t at, json_t *data);

/* ---- cluster.c ---- */

/* The absence as the cluster rules see it, as stored after the event was applied. */
struct ha_case {
    char id[24];
    char school[SC_CODE_MAX + 1];
    char klass[SC_CODE_MAX + 1];
    char grade[HA_NAME_MAX]; /* "" when the directory does not know it */
    char date[11];
    char syndrome[HA_NAME_MAX];    /* primary, or "" */
    char disease[SC_CODE_MAX + 1]; /* or "" */
    bool personal;                 /* a personal absence is no case of anything */
    json_t *syndromes;             /* all of them; owned by whoever filled the struct */
};

/* The cluster rules' statements, prepared in init. */
extern const struct ha_stmt ha_cluster_stmts[];

/*
 * Applies the cluster rules to one absence (c, borrowed): adds it to the open
 * clusters it belongs to and raises new ones. Returns 0 or -errno.
 */
int ha_cluster_case(sc_ctx_t *ctx, struct ha_state *st, const struct ha_case *c, const char *tz,
                    const char *district);

/* Closes the clusters quiet long enough by now. Returns 0 or -errno. */
int ha_cluster_close_due(sc_ctx_t *ctx, sc_time_t now);

/* ---- report.c ---- */

/* A school's day: new reference, or NULL with *rc set. */
json_t *ha_school_day(sc_ctx_t *ctx, const char *school, const char *date, int *rc);

/* A district's day by school: new reference, or NULL with *rc set. */
json_t *ha_district_day(sc_ctx_t *ctx, const char *district, const char *date, int *rc);

/* Sends the daily reports and district roll-ups due by now. */
int ha_reports_due(sc_ctx_t *ctx, struct ha_state *st, sc_time_t now);

/* Runs the EARS algorithms for a school and day, storing and raising alarms. */
int ha_ears_day(sc_ctx_t *ctx, struct ha_state *st, const char *school, const char *district,
                const char *date, sc_time_t at);

/* ---- query.c ---- */

int ha_query(sc_ctx_t *ctx, const json_t *req, json_t **reply);

#endif
