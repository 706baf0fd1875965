/*
 * bench/cpu.c: where the two cores went during a step. Counts the CPU time of the daemon's
 * threads, of its database sessions (by application_name), of the load generator, of the rest of
 * PostgreSQL and of the whole machine, from /proc, at the start and at the end of the measured
 * window; the difference, over the window, is cores used.
 */
#include "bench.h"

#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * The comm, parent and utime + stime (clock ticks) of /proc/<path>/stat (comm and ppid may be
 * NULL); the comm may hold spaces and parentheses, so the fields are read after its last ')'.
 * Returns -1 when unreadable (gone).
 */
static long long s_stat_ticks(const char *path, char *comm, size_t commlen, int *ppid)
{
    char buf[1024];
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *open = strchr(buf, '('), *close = strrchr(buf, ')');
    if (!open || !close || close < open)
        return -1;
    if (comm)
        snprintf(comm, commlen, "%.*s", (int)(close - open - 1), open + 1);
    /* After ") ": state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt
     * utime(14) stime(15). */
    unsigned long long utime, stime;
    int parent;
    if (sscanf(close + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &parent, &utime,
               &stime) != 3)
        return -1;
    if (ppid)
        *ppid = parent;
    return (long long)(utime + stime);
}

static void s_add(json_t *parts, const char *part, long long ticks)
{
    if (ticks <= 0)
        return;
    json_object_set_new(parts, part, json_integer(sc_json_int(parts, part, 0) + (json_int_t)ticks));
}

/* Every thread of process pid, by comm: {comm: ticks}. */
static json_t *s_threads(pid_t pid)
{
    char dir[64];
    json_t *out = json_object();
    snprintf(dir, sizeof dir, "/proc/%d/task", (int)pid);
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && out && (e = readdir(d))) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        char path[128], comm[64];
        snprintf(path, sizeof path, "%s/%.24s/stat", dir, e->d_name);
        long long t = s_stat_ticks(path, comm, sizeof comm, NULL);
        if (t >= 0)
            s_add(out, comm, t);
    }
    if (d)
        closedir(d);
    return out;
}

/* The machine's busy, idle and disk-wait ticks, summed over its CPUs (/proc/stat's first line). */
static int s_machine(long long *busy, long long *idle, long long *iowait)
{
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return -1;
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (n < 5)
        return -1;
    /* user nice system idle iowait irq softirq steal */
    *idle = (long long)v[3];
    *iowait = (long long)v[4];
    *busy = (long long)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]);
    return 0;
}

json_t *bench_cpu_snapshot(PGconn *db, pid_t daemon)
{
    json_t *parts = json_object(), *seen = json_object();
    long long busy, idle, iowait;
    if (!parts || !seen || s_machine(&busy, &idle, &iowait) < 0) {
        json_decref(parts);
        json_decref(seen);
        return NULL;
    }
    /* The daemon's threads: sc-ingest, sc-publish, ZMQbg/…, p:<plugin>, the rest. */
    json_t *threads = s_threads(daemon);
    const char *comm;
    json_t *v;
    json_object_foreach(threads, comm, v)
    {
        const char *part = strcmp(comm, "sc-ingest") == 0    ? "ingest thread"
                           : strncmp(comm, "ZMQbg/", 6) == 0 ? "daemon ZeroMQ I/O"
                           : strncmp(comm, "p:", 2) == 0     ? NULL
                                                             : "daemon other";
        char name[80];
        if (!part) { /* p:<plugin>, cut at 15 bytes by the kernel: matched below */
            snprintf(name, sizeof name, "thread %s", comm + 2);
            part = name;
        }
        s_add(parts, part, json_integer_value(v));
    }
    json_decref(threads);
    /* The daemon's sessions, by application_name (safecampusd/<who>); their parent is the
     * cluster's postmaster. */
    int postmaster = 0;
    PGresult *res = PQexec(db, "SELECT pid, application_name FROM pg_stat_activity"
                               " WHERE application_name LIKE 'safecampusd/%'");
    for (int i = 0; PQresultStatus(res) == PGRES_TUPLES_OK && i < PQntuples(res); i++) {
        char path[64], part[96];
        const char *who = PQgetvalue(res, i, 1) + strlen("safecampusd/");
        snprintf(path, sizeof path, "/proc/%s/stat", PQgetvalue(res, i, 0));
        if (strcmp(who, "journal") == 0)
            snprintf(part, sizeof part, "journal backend");
        else if (strcmp(who, "main") == 0) /* the directory, control's look-ups */
            snprintf(part, sizeof part, "daemon other");
        else
            snprintf(part, sizeof part, "backend %s", who);
        s_add(parts, part, s_stat_ticks(path, NULL, 0, &postmaster));
        json_object_set_new(seen, PQgetvalue(res, i, 0), json_true());
    }
    PQclear(res);
    /* The rest of this cluster (the postmaster, WAL writer, checkpointer, other sessions) —
     * not another cluster on the machine — and us. */
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (!isdigit((unsigned char)e->d_name[0]) || json_object_get(seen, e->d_name))
            continue;
        char path[64], pcomm[64];
        snprintf(path, sizeof path, "/proc/%.24s/stat", e->d_name);
        int pid = atoi(e->d_name), ppid = 0;
        long long t = s_stat_ticks(path, pcomm, sizeof pcomm, &ppid);
        if (pid == (int)getpid())
            s_add(parts, "load generator", t);
        else if (postmaster ? pid == postmaster || ppid == postmaster
                            : strcmp(pcomm, "postgres") == 0)
            s_add(parts, "PostgreSQL other", t);
    }
    if (d)
        closedir(d);
    json_decref(seen);
    json_t *snap = json_pack("{s:I, s:I, s:I, s:o}", "busy", (json_int_t)busy, "idle",
                             (json_int_t)idle, "iowait", (json_int_t)iowait, "parts", parts);
    return snap;
}

/*
 * Plugin threads are named p:<plugin> cut to 15 bytes; their sessions safecampusd/<plugin>.
 * Returns the plugin a "thread …" part belongs to, among the sessions' names, or NULL.
 */
static const char *s_thread_owner(const json_t *parts, const char *thread)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)parts, key, v)
    {
        if (strncmp(key, "backend ", 8) == 0 && strncmp(key + 8, thread, strlen(thread)) == 0)
            return key + 8;
    }
    return NULL;
}

json_t *bench_cpu_diff(const json_t *a, const json_t *b, double seconds)
{
    if (!a || !b || seconds <= 0)
        return json_null();
    double hz = (double)sysconf(_SC_CLK_TCK);
    double per = 1.0 / (hz * seconds); /* ticks → cores */
    const json_t *pa = json_object_get(a, "parts"), *pb = json_object_get(b, "parts");
    json_t *cores = json_object(), *plugins = json_object();
    double accounted = 0;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)pb, key, v)
    {
        double c = (double)(json_integer_value(v) - sc_json_int(pa, key, 0)) * per;
        if (c < 0)
            c = 0; /* a process that came and went between the two readings */
        accounted += c;
        const char *plugin = NULL;
        if (strncmp(key, "backend ", 8) == 0)
            plugin = key + 8;
        else if (strncmp(key, "thread ", 7) == 0)
            plugin = s_thread_owner(pb, key + 7);
        if (plugin) {
            json_t *p = json_object_get(plugins, plugin);
            if (!p)
                json_object_set_new(plugins, plugin,
                                    p = json_pack("{s:f, s:f}", "thread", 0.0, "backend", 0.0));
            const char *side = key[0] == 'b' ? "backend" : "thread";
            json_object_set_new(p, side, json_real(json_real_value(json_object_get(p, side)) + c));
        } else {
            json_object_set_new(cores, key, json_real(c));
        }
    }
    double busy = (double)(sc_json_int(b, "busy", 0) - sc_json_int(a, "busy", 0)) * per;
    double idle = (double)(sc_json_int(b, "idle", 0) - sc_json_int(a, "idle", 0)) * per;
    double iowait = (double)(sc_json_int(b, "iowait", 0) - sc_json_int(a, "iowait", 0)) * per;
    double other = busy - accounted;
    json_object_set_new(cores, "other (kernel, other processes)", json_real(other > 0 ? other : 0));
    return json_pack("{s:f, s:f, s:f, s:o, s:o}", "busy", busy, "idle", idle, "iowait", iowait,
                     "cores", cores, "plugins", plugins);
}
