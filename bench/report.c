/* bench/report.c: puts the daemon's figures beside the limits of the same run; prints and saves. */
#include "bench.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S_MAX_REFS 4
#define S_GROWTH_SHARE                                                                             \
    0.05 /* a plugin whose lag grows by more than 5 % of the arrivals falls behind */

static const char *s_usage =
    "usage: report --load FILE --ref FILE [--ref FILE] --out-dir DIR [--cores N] [--note TEXT]\n";

/* Targets on a 2-core machine (the issue). */
#define S_TARGET_RDB 0.85
#define S_TARGET_P50_MS 0.5
#define S_TARGET_P99_MS 1.0

static double s_num(const json_t *o, const char *path)
{
    char key[64];
    const json_t *v = o;
    while (v && *path) {
        size_t n = strcspn(path, ".");
        snprintf(key, sizeof key, "%.*s", (int)n, path);
        v = json_object_get(v, key);
        path += n + (path[n] == '.');
    }
    return json_is_number(v) ? json_number_value(v) : -1;
}

/* A number for the table: "-" when absent (negative). */
static const char *s_fmt(char *buf, size_t len, const char *fmt, double v)
{
    if (v < 0)
        snprintf(buf, len, "-");
    else
        snprintf(buf, len, fmt, v);
    return buf;
}

static const json_t *s_step(const json_t *load, const char *name)
{
    size_t i;
    const json_t *s;
    json_array_foreach(json_object_get(load, "steps"), i, s)
    {
        if (strcmp(sc_json_str(s, "name") ? sc_json_str(s, "name") : "", name) == 0)
            return s;
    }
    return NULL;
}

/* The step at a district's ordinary rate (loadgen --calm), or NULL. */
static const json_t *s_calm_step(const json_t *load)
{
    size_t i;
    const json_t *s;
    json_array_foreach(json_object_get(load, "steps"), i, s)
    {
        if (sc_json_bool(s, "calm", false))
            return s;
    }
    return NULL;
}

/* The worst plugin of a step: highest max lag during the load, highest lag slope, longest catch-up.
 */
static void s_worst(const json_t *step, json_int_t *max_lag, double *slope, const char **slope_by,
                    double *catchup, bool *caught, json_int_t *left)
{
    const char *name;
    const json_t *v;
    *max_lag = 0;
    *slope = 0;
    *slope_by = "-";
    *catchup = 0;
    *left = 0;
    *caught = sc_json_bool(step, "caught_up", false);
    json_object_foreach((json_t *)json_object_get(step, "plugins_during_load"), name, v)
    {
        if (sc_json_int(v, "max_lag", 0) > *max_lag)
            *max_lag = sc_json_int(v, "max_lag", 0);
        double s = sc_json_num(v, "lag_slope_per_s", 0);
        if (s > *slope) {
            *slope = s;
            *slope_by = name;
        }
    }
    json_object_foreach((json_t *)json_object_get(step, "plugins_after_load"), name, v)
    {
        double c = sc_json_num(v, "catchup_s", -1);
        if (c < 0) /* not caught up: the estimate, from how fast it went meanwhile */
            c = sc_json_num(v, "estimated_catchup_s", -1);
        if (c > *catchup)
            *catchup = c;
        if (sc_json_int(v, "lag_left", 0) > *left)
            *left = sc_json_int(v, "lag_left", 0);
    }
}

/* "*" for a step that began with the plugins more than 1000 events behind. */
static const char *s_behind(const json_t *step, bool *any)
{
    if (sc_json_int(step, "lag_at_start", 0) <= 1000)
        return "";
    *any = true;
    return "*";
}

/* The catch-up cell: "12.3s", or "~95s" (estimated) with the lag left when it did not finish. */
static const char *s_catchup_cell(char *buf, size_t len, bool caught, double catchup,
                                  json_int_t left)
{
    if (caught)
        snprintf(buf, len, "%.1fs", catchup);
    else if (catchup > 0)
        snprintf(buf, len, "~%.0fs(%lld)", catchup, (long long)left);
    else
        snprintf(buf, len, "no(%lld)", (long long)left);
    return buf;
}

/* One row of the limits table: each reference run's value(s), then the value used. */
static void s_ref_row(const json_t *refs, const char *what, const char *unit, const char *key,
                      const char *key2, double used)
{
    char buf[32];
    size_t i;
    const json_t *r;
    printf("  %-46s %12s", what, unit);
    json_array_foreach(refs, i, r)
    {
        if (!key)
            break;
        double v = s_num(r, key), w = key2 ? s_num(r, key2) : 0;
        if (key2)
            snprintf(buf, sizeof buf, v < 10 ? "%.2f/%.2f" : "%.0f/%.0f", v, w);
        else
            snprintf(buf, sizeof buf, v < 1 ? "%.3f" : v < 10 ? "%.2f" : "%.0f", v);
        printf("%12s", v < 0 ? "-" : buf);
    }
    if (used >= 0) {
        snprintf(buf, sizeof buf, used < 1 ? "%.3f" : used < 10 ? "%.2f" : "%.0f", used);
        printf("%12s", buf);
    }
    printf("\n");
}

/* The mean batched-insert rate measured right before and after a step, or 0 when it was not. */
static double s_beside(const json_t *step)
{
    const json_t *b = json_object_get(step, "reference_beside");
    double before = s_num(b, "before.rows_per_s"), after = s_num(b, "after.rows_per_s");
    return before > 0 && after > 0 ? (before + after) / 2 : 0;
}

/* Cores a step's "cpu" gives `part`; with `plugins`, the sum of that side of every plugin. */
static double s_cores(const json_t *step, const char *part, const char *plugins)
{
    const json_t *cpu = json_object_get(step, "cpu");
    if (!plugins)
        return sc_json_num(json_object_get(cpu, "cores"), part, 0);
    double sum = 0;
    const char *name;
    const json_t *p;
    json_object_foreach((json_t *)json_object_get(cpu, "plugins"), name, p)
    {
        sum += sc_json_num(p, plugins, 0);
    }
    return sum;
}

/* Where the cores went in each step (loadgen's /proc readings), and each plugin's share. */
static void s_cpu_table(const json_t *load)
{
    size_t i;
    const json_t *st;
    printf("\ncores used in each step's measured window (/proc)\n"
           "  step      ingest  journal  daemon  daemon  plugins  plugins  load   PostgreSQL  "
           "other   idle  (disk\n"
           "            thread  backend  ZMQ IO  other   threads  backends  gen.  other"
           "                       wait)\n");
    json_array_foreach(json_object_get(load, "steps"), i, st)
    {
        const json_t *cpu = json_object_get(st, "cpu");
        if (!json_is_object(cpu))
            continue;
        printf("  %-8s %7.2f %8.2f %7.2f %7.2f %8.2f %8.2f %6.2f %9.2f %8.2f %6.2f %5.2f\n",
               sc_json_str(st, "name"), s_cores(st, "ingest thread", NULL),
               s_cores(st, "journal backend", NULL), s_cores(st, "daemon ZeroMQ I/O", NULL),
               s_cores(st, "daemon other", NULL), s_cores(st, NULL, "thread"),
               s_cores(st, NULL, "backend"), s_cores(st, "load generator", NULL),
               s_cores(st, "PostgreSQL other", NULL),
               s_cores(st, "other (kernel, other processes)", NULL),
               sc_json_num(cpu, "idle", 0) + sc_json_num(cpu, "iowait", 0),
               sc_json_num(cpu, "iowait", 0));
    }
    printf("  each plugin, thread + backend cores (µs per event it handled during the window)\n");
    const json_t *last = json_array_get(json_object_get(load, "steps"),
                                        json_array_size(json_object_get(load, "steps")) - 1);
    const char *pname;
    const json_t *pv;
    json_object_foreach((json_t *)json_object_get(json_object_get(last, "cpu"), "plugins"), pname,
                        pv)
    {
        printf("  %-22s", pname);
        json_array_foreach(json_object_get(load, "steps"), i, st)
        {
            const json_t *p =
                json_object_get(json_object_get(json_object_get(st, "cpu"), "plugins"), pname);
            double c = sc_json_num(p, "thread", 0) + sc_json_num(p, "backend", 0);
            double h =
                sc_json_num(json_object_get(json_object_get(st, "plugins_during_load"), pname),
                            "handled_per_s", 0);
            char cell[32];
            if (h >= 1)
                snprintf(cell, sizeof cell, "%.2f (%.0f)", c, c * 1e6 / h);
            else
                snprintf(cell, sizeof cell, "%.2f", c);
            printf(" %5s %-12s", sc_json_str(st, "name"), cell);
        }
        printf("\n");
    }
}

static int s_mkdirs(const char *dir)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
    return strchr(dir, '\'') || system(cmd) != 0 ? -EIO : 0;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {{"load", required_argument, NULL, 'l'},
                                             {"ref", required_argument, NULL, 'r'},
                                             {"out-dir", required_argument, NULL, 'o'},
                                             {"cores", required_argument, NULL, 'c'},
                                             {"note", required_argument, NULL, 'n'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *load_path = NULL, *out_dir = NULL, *note = "", *ref_paths[S_MAX_REFS];
    int nref = 0, cores = 0, c, rc = 2;
    bool behind = false;
    json_t *load = NULL, *refs = json_array(), *out = NULL, *headline = NULL;
    json_error_t jerr;
    char a[32], b[32], d[32], e[32], f[32], g[32], h[96], k[32], m[128];

    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'l':
            load_path = optarg;
            break;
        case 'r':
            if (nref < S_MAX_REFS)
                ref_paths[nref++] = optarg;
            break;
        case 'o':
            out_dir = optarg;
            break;
        case 'c':
            cores = atoi(optarg);
            break;
        case 'n':
            note = optarg;
            break;
        default:
            fputs(s_usage, stderr);
            return 2;
        }
    }
    if (!load_path || !out_dir || nref == 0) {
        fputs(s_usage, stderr);
        return 2;
    }
    if (!(load = json_load_file(load_path, 0, &jerr))) {
        fprintf(stderr, "report: %s: %s\n", load_path, jerr.text);
        goto out;
    }
    for (int i = 0; i < nref; i++) {
        json_t *r = json_load_file(ref_paths[i], 0, &jerr);
        if (!r) {
            fprintf(stderr, "report: %s: %s\n", ref_paths[i], jerr.text);
            goto out;
        }
        json_array_append_new(refs, r);
    }

    /* The limits: the mean over the reference runs (before and after the daemon's steps). */
    double ref_ins = 0, ref_fn = 0, ref_copy = 0, commit_p50 = 0, commit_p99 = 0, pq_p50 = 0,
           fn_one_p50 = 0, lone_p50 = 0;
    size_t i;
    json_t *r;
    json_array_foreach(refs, i, r)
    {
        ref_ins += s_num(r, "batched_insert.rows_per_s") / nref;
        ref_copy += s_num(r, "copy.rows_per_s") / nref;
        ref_fn += s_num(r, "journal_append.rows_per_s") / nref;
        commit_p50 += s_num(r, "single_commit.latency_ms.p50") / nref;
        commit_p99 += s_num(r, "single_commit.latency_ms.p99") / nref;
        fn_one_p50 += s_num(r, "journal_append_one.statement_ms.p50") / nref;
        lone_p50 += s_num(r, "journal_one.statement_ms.p50") / nref;
        pq_p50 += s_num(r, "select1.latency_ms.p50") / nref;
    }
    double zmq_p50 = s_num(load, "zmq_rtt_ms.p50"), zmq_p99 = s_num(load, "zmq_rtt_ms.p99");
    const json_t *r0 = json_array_get(refs, 0), *set = json_object_get(r0, "settings");
    char stamp[SC_TIME_LEN];
    sc_time_format(bench_wall_us() / SC_USEC_PER_SEC * SC_USEC_PER_SEC, stamp);

    printf("\nsafecampus bench  %s  tag %s  %d cores  %.0f s per step (+%.1f s warm-up)  "
           "%d clients%s%s\n",
           stamp, sc_json_str(load, "tag") ? sc_json_str(load, "tag") : "?", cores,
           s_num(load, "seconds"), s_num(load, "warmup"), (int)s_num(load, "clients"),
           note[0] ? "  " : "", note);
    printf("PostgreSQL %s: fsync=%s synchronous_commit=%s full_page_writes=%s "
           "wal_sync_method=%s shared_buffers=%s x 8kB\n",
           sc_json_str(set, "server_version"), sc_json_str(set, "fsync"),
           sc_json_str(set, "synchronous_commit"), sc_json_str(set, "full_page_writes"),
           sc_json_str(set, "wal_sync_method"), sc_json_str(set, "shared_buffers"));

    printf("\nlimits measured in this run, same cluster                    ");
    json_array_foreach(refs, i, r) printf("%12s", sc_json_str(r, "label"));
    printf("%12s\n", "used");
    s_ref_row(refs, "batched INSERT..unnest..ON CONFLICT", "rows/s", "batched_insert.rows_per_s",
              NULL, ref_ins);
    s_ref_row(refs, "core.journal_append called directly", "rows/s", "journal_append.rows_per_s",
              NULL, ref_fn);
    s_ref_row(refs, "COPY (binary)", "rows/s", "copy.rows_per_s", NULL, ref_copy);
    s_ref_row(refs, "  (the three above: 1000 rows per statement and commit)", "", NULL, NULL, -1);
    s_ref_row(refs, "one-row INSERT, synchronous commit", "p50/p99 ms",
              "single_commit.latency_ms.p50", "single_commit.latency_ms.p99", commit_p50);
    s_ref_row(refs, "one-row core.journal_append, synchronous commit", "p50/p99 ms",
              "journal_append_one.statement_ms.p50", "journal_append_one.statement_ms.p99",
              fn_one_p50);
    s_ref_row(refs, "one event as the daemon journals it alone", "p50/p99 ms",
              "journal_one.statement_ms.p50", "journal_one.statement_ms.p99", lone_p50);
    s_ref_row(refs, "libpq round trip, SELECT 1", "p50 ms", "select1.latency_ms.p50", NULL, pq_p50);
    s_ref_row(refs, "WAL per row, batched insert / journal_append", "bytes",
              "batched_insert.wal_bytes_per_row", "journal_append.wal_bytes_per_row", -1);
    /* The commit floor of the latency ratio: measured beside the one-in-flight step, when it was.
     */
    if (s_num(load, "commit_ms.p50") > 0) {
        commit_p50 = s_num(load, "commit_ms.p50");
        commit_p99 = s_num(load, "commit_ms.p99");
        snprintf(a, sizeof a, "%.2f/%.2f", commit_p50, commit_p99);
        printf("  %-46s %12s%*s\n", "one-row commit, beside w1k1 (loadgen)", "p50/p99 ms",
               12 * (nref + 1), a);
    }
    /* The calm step's floor: one-row commits at its pace, each finding the database idle. */
    const json_t *calm = s_calm_step(load);
    if (calm && s_num(load, "calm_commit_ms.p50") > 0) {
        char what[64];
        snprintf(what, sizeof what, "one-row commit, %.0f/s, beside %s (loadgen)",
                 s_num(calm, "target_rate"), sc_json_str(calm, "name"));
        snprintf(a, sizeof a, "%.2f/%.2f", s_num(load, "calm_commit_ms.p50"),
                 s_num(load, "calm_commit_ms.p99"));
        printf("  %-46s %12s%*s\n", what, "p50/p99 ms", 12 * (nref + 1), a);
        snprintf(what, sizeof what, "ZeroMQ round trip, %.0f/s, beside %s",
                 s_num(calm, "target_rate"), sc_json_str(calm, "name"));
        snprintf(a, sizeof a, "%.3f/%.3f", s_num(load, "calm_zmq_rtt_ms.p50"),
                 s_num(load, "calm_zmq_rtt_ms.p99"));
        printf("  %-46s %12s%*s\n", what, "p50/p99 ms", 12 * (nref + 1), a);
    }
    /* R_db's limit: the batched insert measured right before and after the widest step. */
    const json_t *big = s_step(load, "w1024");
    if (!big)
        big = json_array_get(json_object_get(load, "steps"),
                             json_array_size(json_object_get(load, "steps")) - 1);
    double beside = s_beside(big);
    if (beside > 0) {
        char what[64];
        snprintf(what, sizeof what, "batched INSERT, beside %s (loadgen)",
                 sc_json_str(big, "name"));
        snprintf(a, sizeof a, "%.0f/%.0f",
                 s_num(json_object_get(big, "reference_beside"), "before.rows_per_s"),
                 s_num(json_object_get(big, "reference_beside"), "after.rows_per_s"));
        printf("  %-46s %12s%*s%12.0f\n", what, "rows/s", 12 * nref, a, beside);
        const json_t *rb = json_object_get(big, "reference_beside");
        const json_t *cb = json_object_get(json_object_get(rb, "before"), "plugins_caught_up");
        const json_t *ca = json_object_get(json_object_get(rb, "after"), "plugins_caught_up");
        if ((cb && !json_is_true(cb)) || (ca && !json_is_true(ca)))
            printf("    (measured while plugins were still catching up: the limit reads low and"
                   " R_db high)\n");
    }
    snprintf(a, sizeof a, "%.3f/%.3f", zmq_p50, zmq_p99);
    printf("  %-46s %12s%*s\n", "ZeroMQ round trip, DEALER-ROUTER loopback", "p50/p99 ms",
           12 * (nref + 1), a);
    printf("\nclosed loop  K     W   acked/s   R_db  p50 ms  p99 ms p99.9ms  avg batch "
           "commits/s WAL B/ev  max lag catch-up  check\n");
    const json_t *st;
    json_array_foreach(json_object_get(load, "steps"), i, st)
    {
        if (strcmp(sc_json_str(st, "mode"), "closed") != 0)
            continue;
        json_int_t max_lag, left;
        double slope, catchup;
        const char *by;
        bool caught;
        s_worst(st, &max_lag, &slope, &by, &catchup, &caught, &left);
        double rate = s_num(st, "acked_per_s"), limit = s_beside(st) > 0 ? s_beside(st) : ref_ins;
        snprintf(k, sizeof k, "%s%s", sc_json_str(st, "name"), s_behind(st, &behind));
        printf("  %-8s %3d %5d %9.0f %6.2f %7s %7s %7s %10s %9.1f %8s %8lld %8s  %s\n", k,
               (int)s_num(st, "clients"), (int)s_num(st, "window"), rate,
               limit > 0 ? rate / limit : 0,
               s_fmt(a, sizeof a, "%.2f", s_num(st, "latency_ms.p50")),
               s_fmt(b, sizeof b, "%.2f", s_num(st, "latency_ms.p99")),
               s_fmt(d, sizeof d, "%.2f", s_num(st, "latency_ms.p999")),
               s_fmt(e, sizeof e, "%.1f", s_num(st, "avg_batch")), s_num(st, "commits_per_s"),
               s_fmt(f, sizeof f, "%.0f", s_num(st, "wal_bytes_per_event")), (long long)max_lag,
               s_catchup_cell(g, sizeof g, caught, catchup, left),
               sc_json_bool(st, "pass", false) ? "ok" : "FAIL");
    }
    printf("\nopen loop    K  offered/s  acked/s  %%max  p50 ms  p99 ms p99.9ms  avg batch "
           "commits/s  lag growth/s (worst), held back   catch-up  check\n");
    json_array_foreach(json_object_get(load, "steps"), i, st)
    {
        if (strcmp(sc_json_str(st, "mode"), "open") != 0)
            continue;
        json_int_t max_lag, left;
        double slope, catchup;
        const char *by;
        bool caught;
        s_worst(st, &max_lag, &slope, &by, &catchup, &caught, &left);
        /* How often that plugin held a batch back for a busy intake (plugins.yield). */
        json_int_t held = sc_json_int(
            json_object_get(json_object_get(st, "plugins_during_load"), by), "yielded", 0);
        snprintf(h, sizeof h, "%.0f %s, %lld", slope, by, (long long)held);
        snprintf(k, sizeof k, "%s%s", sc_json_str(st, "name"), s_behind(st, &behind));
        printf("  %-8s %3d %9.0f %8.0f %5s %7s %7s %7s %10s %9.1f  %-31s %8s  %s\n", k,
               (int)s_num(st, "clients"), s_num(st, "target_rate"), s_num(st, "acked_per_s"),
               s_fmt(m, sizeof m, "%.0f", s_num(st, "percent_of_max")),
               s_fmt(a, sizeof a, "%.2f", s_num(st, "latency_ms.p50")),
               s_fmt(b, sizeof b, "%.2f", s_num(st, "latency_ms.p99")),
               s_fmt(d, sizeof d, "%.2f", s_num(st, "latency_ms.p999")),
               s_fmt(e, sizeof e, "%.1f", s_num(st, "avg_batch")), s_num(st, "commits_per_s"), h,
               s_catchup_cell(g, sizeof g, caught, catchup, left),
               sc_json_bool(st, "pass", false) ? "ok" : "FAIL");
    }

    if (behind)
        printf("  * started behind: the plugins had not caught up with the step before "
               "(BENCH_CATCHUP)\n");

    /* Plugins: what each handled per second while the load ran and while it caught up. */
    printf("\nplugins       handled/s while catching up after %s; max lag in each step "
           "(events behind the journal head)\n  %-22s %10s",
           big ? sc_json_str(big, "name") : "-", "plugin", "handled/s");
    json_array_foreach(json_object_get(load, "steps"), i, st)
        printf("%8s", sc_json_str(st, "name"));
    printf("\n");
    const char *pname;
    const json_t *pv;
    json_object_foreach((json_t *)json_object_get(big, "plugins_during_load"), pname, pv)
    {
        const json_t *after = json_object_get(json_object_get(big, "plugins_after_load"), pname);
        printf("  %-22s %10s", pname,
               s_fmt(a, sizeof a, "%.0f", sc_json_num(after, "handled_per_s", -1)));
        json_array_foreach(json_object_get(load, "steps"), i, st)
        {
            const json_t *p = json_object_get(json_object_get(st, "plugins_during_load"), pname);
            printf("%8lld", (long long)sc_json_int(p, "max_lag", 0));
        }
        printf("\n");
    }

    s_cpu_table(load);

    /* The headline. */
    const json_t *one = s_step(load, "w1k1"), *half = s_step(load, "o50");
    double top = s_num(big, "acked_per_s"), best = 0;
    const char *best_name = "-";
    json_array_foreach(json_object_get(load, "steps"), i, st)
    {
        if (strcmp(sc_json_str(st, "mode"), "closed") == 0 && s_num(st, "acked_per_s") > best) {
            best = s_num(st, "acked_per_s");
            best_name = sc_json_str(st, "name");
        }
    }
    double limit = beside > 0 ? beside : ref_ins;
    double r_db = limit > 0 && top >= 0 ? top / limit : -1;
    double r_db_run = ref_ins > 0 && top >= 0 ? top / ref_ins : -1;
    double r_copy = ref_copy > 0 && top >= 0 ? top / ref_copy : -1;
    double r_fn = ref_ins > 0 && ref_fn > 0 ? ref_fn / ref_ins : -1;
    double r_d = ref_fn > 0 && top >= 0 ? top / ref_fn : -1;
    double p50 = s_num(one, "latency_ms.p50"), p99 = s_num(one, "latency_ms.p99");
    double floor50 = zmq_p50 + commit_p50, floor99 = zmq_p99 + commit_p99;
    double r_lat = p50 > 0 && floor50 > 0 ? p50 / floor50 : -1;
    double r_lat99 = p99 > 0 && floor99 > 0 ? p99 / floor99 : -1;
    json_int_t hl, hleft;
    double hslope = 0, hcatch;
    const char *hby = "-";
    bool hcaught = false;
    if (half)
        s_worst(half, &hl, &hslope, &hby, &hcatch, &hcaught, &hleft);
    double offered = s_num(half, "target_rate");
    bool bounded = half && hcaught && hslope <= S_GROWTH_SHARE * offered;
    json_int_t missing = 0, dups = 0, refused = 0, wrong = 0;
    bool all_pass = sc_json_bool(load, "pass", false);
    json_array_foreach(json_object_get(load, "steps"), i, st)
    {
        missing += sc_json_int(json_object_get(st, "verify"), "missing", 0);
        dups += sc_json_int(json_object_get(st, "verify"), "duplicates", 0);
        refused += sc_json_int(st, "refused_total", 0);
        wrong += sc_json_int(st, "wrong_duplicate_replies", 0);
    }
    printf("\nheadline                                                          value     "
           "target\n");
    printf("  R_db   = acked/s at W=1024 / batched INSERT rows/s %-9s %10s   >= %.2f  %s\n",
           beside > 0 ? "beside it" : "", s_fmt(a, sizeof a, "%.2f", r_db), S_TARGET_RDB,
           r_db >= S_TARGET_RDB ? "met" : "MISSED");
    if (beside > 0)
        printf("  R_db against the run's first and last minutes (before/after) %9s\n",
               s_fmt(a, sizeof a, "%.2f", r_db_run));
    if (big && sc_json_int(big, "lag_at_start", 0) > 1000)
        printf("           (%s started %lld positions behind: see *)\n", sc_json_str(big, "name"),
               (long long)sc_json_int(big, "lag_at_start", 0));
    printf("  R_db best = best closed-loop acked/s (%s) / batched INSERT   %10s\n", best_name,
           s_fmt(a, sizeof a, "%.2f", ref_ins > 0 ? best / ref_ins : -1));
    printf("  R_copy = acked/s at W=1024 / COPY rows/s                    %10s\n",
           s_fmt(a, sizeof a, "%.2f", r_copy));
    printf("  R_fn   = journal_append direct / batched INSERT (the SQL)   %10s\n",
           s_fmt(a, sizeof a, "%.2f", r_fn));
    printf("  R_d    = acked/s at W=1024 / journal_append direct          %10s\n",
           s_fmt(a, sizeof a, "%.2f", r_d));
    printf("  1 in flight: ack p50 / (ZeroMQ RTT p50 + commit p50)        %10s   (%.3f + %.3f "
           "ms)\n",
           s_fmt(a, sizeof a, "%.2f", r_lat), zmq_p50, commit_p50);
    printf("  1 in flight: ack p99 / (ZeroMQ RTT p99 + commit p99)        %10s\n",
           s_fmt(a, sizeof a, "%.2f", r_lat99));
    /* Where the rest goes: the journal's own statement for an event alone, and what is left for
     * the daemon (reading, checking, acking) and ZeroMQ. */
    printf("  1 in flight: ack p50 − the journal's one-event statement p50  %10s   (the daemon"
           " and ZeroMQ)\n",
           s_fmt(a, sizeof a, "%.3f ms", p50 > 0 && lone_p50 > 0 ? p50 - lone_p50 : -1));
    /* And where the tail goes: the daemon's own histograms (stats.latency) over the step. */
    printf("  1 in flight: held in the daemon p50/p99 (the journal's answer)  %s/%s (%s/%s) ms\n",
           s_fmt(a, sizeof a, "%.2f", s_num(one, "daemon_latency.in_daemon.p50_ms")),
           s_fmt(k, sizeof k, "%.2f", s_num(one, "daemon_latency.in_daemon.p99_ms")),
           s_fmt(m, sizeof m, "%.2f", s_num(one, "daemon_latency.journal.p50_ms")),
           s_fmt(b, sizeof b, "%.2f", s_num(one, "daemon_latency.journal.p99_ms")));
    /* What a gate sees on an ordinary morning, beside what a lone commit costs at that pace. */
    if (calm)
        printf(
            "  calm, %.0f/s: ack p50/p99 %s/%s ms, held in the daemon %s/%s; a lone commit %s/%s,"
            " ZeroMQ %s/%s\n",
            s_num(calm, "target_rate"), s_fmt(a, sizeof a, "%.2f", s_num(calm, "latency_ms.p50")),
            s_fmt(b, sizeof b, "%.2f", s_num(calm, "latency_ms.p99")),
            s_fmt(d, sizeof d, "%.2f", s_num(calm, "daemon_latency.in_daemon.p50_ms")),
            s_fmt(e, sizeof e, "%.2f", s_num(calm, "daemon_latency.in_daemon.p99_ms")),
            s_fmt(f, sizeof f, "%.2f", s_num(load, "calm_commit_ms.p50")),
            s_fmt(g, sizeof g, "%.2f", s_num(load, "calm_commit_ms.p99")),
            s_fmt(k, sizeof k, "%.2f", s_num(load, "calm_zmq_rtt_ms.p50")),
            s_fmt(m, sizeof m, "%.2f", s_num(load, "calm_zmq_rtt_ms.p99")));
    printf("  1 in flight: ack p50                                        %10s   <= %.1f ms "
           "%s\n",
           s_fmt(a, sizeof a, "%.3f ms", p50), S_TARGET_P50_MS,
           p50 >= 0 && p50 <= S_TARGET_P50_MS ? "met" : "MISSED");
    printf("  1 in flight: ack p99                                        %10s   <= %.1f ms "
           "%s\n",
           s_fmt(a, sizeof a, "%.3f ms", p99), S_TARGET_P99_MS,
           p99 >= 0 && p99 <= S_TARGET_P99_MS ? "met" : "MISSED");
    snprintf(k, sizeof k, "%s", bounded ? "bounded" : "GROWS");
    /* Where intake itself could not keep up, the machine was out of room for everything: say
     * so beside the plugins' figure, which then follows from it. */
    double half_acked = s_num(half, "acked_per_s");
    if (half && half_acked >= 0 && half_acked < (1 - S_GROWTH_SHARE) * offered)
        snprintf(m, sizeof m,
                 "(worst %s %+.0f/s of %.0f/s offered; intake itself behind: %.0f/s acked)", hby,
                 hslope, offered, half_acked);
    else
        snprintf(m, sizeof m, "(worst %s %+.0f/s of %.0f/s offered)", hby, hslope, offered);
    printf("  at 50 %% of max ingest: plugin lag                           %10s   bounded  "
           "%s %s\n",
           k, bounded ? "met" : "MISSED", m);
    printf("  acked-but-missing / duplicates / refused / wrong dup replies %9lld/%lld/%lld/%lld"
           "   0/0/0/0  %s\n",
           (long long)missing, (long long)dups, (long long)refused, (long long)wrong,
           all_pass ? "met" : "FAILED");

    headline = json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:b, s:I, s:I, s:I, "
                         "s:b}",
                         "r_db", r_db >= 0 ? json_real(r_db) : json_null(), "r_db_run",
                         r_db_run >= 0 ? json_real(r_db_run) : json_null(), "r_db_best",
                         ref_ins > 0 ? json_real(best / ref_ins) : json_null(), "r_copy",
                         r_copy >= 0 ? json_real(r_copy) : json_null(), "r_fn",
                         r_fn >= 0 ? json_real(r_fn) : json_null(), "r_d",
                         r_d >= 0 ? json_real(r_d) : json_null(), "latency_ratio_p50",
                         r_lat >= 0 ? json_real(r_lat) : json_null(), "latency_ratio_p99",
                         r_lat99 >= 0 ? json_real(r_lat99) : json_null(), "one_in_flight_p50_ms",
                         p50 >= 0 ? json_real(p50) : json_null(), "one_in_flight_p99_ms",
                         p99 >= 0 ? json_real(p99) : json_null(), "lag_bounded_at_50pct", bounded,
                         "missing", (json_int_t)missing, "duplicates", (json_int_t)dups, "refused",
                         (json_int_t)refused, "pass", all_pass);
    out =
        json_pack("{s:s, s:i, s:s, s:o, s:{s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f}, s:O, s:O}",
                  "finished_at", stamp, "cores", cores, "note", note, "headline", headline,
                  "limits", "batched_insert_beside_rows_per_s", beside, "batched_insert_rows_per_s",
                  ref_ins, "journal_append_rows_per_s", ref_fn, "copy_rows_per_s", ref_copy,
                  "commit_p50_ms", commit_p50, "commit_p99_ms", commit_p99, "zmq_rtt_p50_ms",
                  zmq_p50, "pq_rtt_p50_ms", pq_p50, "reference", refs, "load", load);
    headline = NULL;
    char path[1024], latest[1024], file[64];
    snprintf(file, sizeof file, "%.19s", stamp);
    for (char *p = file; *p; p++)
        if (*p == ':')
            *p = '-';
    snprintf(path, sizeof path, "%s/%sZ.json", out_dir, file);
    snprintf(latest, sizeof latest, "%s/latest.json", out_dir);
    if (!out || s_mkdirs(out_dir) < 0 || json_dump_file(out, path, JSON_INDENT(1)) < 0 ||
        json_dump_file(out, latest, JSON_INDENT(1)) < 0) {
        fflush(stdout);
        fprintf(stderr, "report: could not %s %s\n", out ? "write" : "build", path);
        goto out;
    }
    printf("\nresults: %s (and latest.json)\n", path);
    rc = all_pass ? 0 : 1;
out:
    json_decref(headline);
    json_decref(out);
    json_decref(load);
    json_decref(refs);
    return rc;
}
