/* bench/bench.h: what loadgen, refinsert and report share: clocks, the event mix, binary arrays. */
#ifndef SAFECAMPUS_BENCH_H
#define SAFECAMPUS_BENCH_H

#include <safecampus/util.h>

#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The directory the load is addressed to (loadgen sends it before the first step). */
#define BENCH_DISTRICT "dist-bench"
#define BENCH_SCHOOLS 10
#define BENCH_CLASSES 6   /* per school */
#define BENCH_STUDENTS 40 /* per class */

#define BENCH_FRAME_MAX 2048 /* longest envelope the mix makes, with room to spare */

/* Monotonic nanoseconds (CLOCK_MONOTONIC): for intervals. */
int64_t bench_mono_ns(void);

/* Wall-clock microseconds since the Unix epoch (an sc_time_t). */
sc_time_t bench_wall_us(void);

/*
 * One event of the mix: gate entries (pupils' cards and visitors), illness and
 * personal absences, general hazard reports; ~300 bytes on the wire on average.
 * Every field is valid for the owning plugin's validator. The content is a pure
 * function of (tag, client, seq, occurred_at), so a resend is the same event.
 */
typedef struct bench_event {
    const char *type;
    char school[16];
    const char *district;
    char source[48];
    char id[64];
    char actor[32]; /* "" when none */
    sc_time_t occurred_at;
    char data[1024];
    size_t data_len;
} bench_event_t;

/*
 * Fills ev with event seq (>= 1) of client in the run tagged tag (a short
 * code), sent by source. The id is "<tag>.<client>.<seq>".
 */
void bench_event_make(bench_event_t *ev, const char *source, const char *tag, unsigned client,
                      uint64_t seq, sc_time_t occurred_at);

/* Writes the wire envelope of ev into buf; returns its length, or 0 if cap is too small. */
size_t bench_event_envelope(const bench_event_t *ev, char *buf, size_t cap);

/* The seq of an id made by bench_event_make, or 0 if it is not one. */
uint64_t bench_id_seq(const char *id, size_t len);

/* A 64-bit mix (splitmix64): spreads the event choices. */
uint64_t bench_mix(uint64_t x);

/* PostgreSQL's binary format (arrays, COPY): sc_pqbuf_* in <safecampus/util.h>. */

/* ---- latency samples ---- */

typedef struct bench_lat {
    int64_t *v; /* nanoseconds */
    size_t n, cap;
} bench_lat_t;

int bench_lat_add(bench_lat_t *l, int64_t ns);
int bench_lat_merge(bench_lat_t *dst, const bench_lat_t *src);
void bench_lat_free(bench_lat_t *l);
/*
 * Sorts the samples and summarises them in milliseconds: a new object
 * {"n","mean","p50","p90","p99","p999","max"}; with no samples, values are null.
 */
json_t *bench_lat_summary(bench_lat_t *l);

/* ---- where the cores went (cpu.c) ---- */

/*
 * CPU time so far, from /proc: the machine's busy and idle ticks, and per part: the daemon's
 * threads (ingest thread, ZeroMQ I/O, each plugin's, the rest), its sessions found in
 * pg_stat_activity through db (journal backend, each plugin's), the load generator, every other
 * postgres process. NULL when /proc cannot be read.
 */
json_t *bench_cpu_snapshot(PGconn *db, pid_t daemon);

/*
 * Cores used between two snapshots `seconds` apart: {"busy","idle","iowait" (idle, waiting for
 * the disk),"cores":{part: cores},
 * "plugins":{plugin: {"thread","backend"}}}; "cores" has "other (kernel, other processes)" for
 * what the machine did besides the parts. JSON null when either snapshot is missing.
 */
json_t *bench_cpu_diff(const json_t *a, const json_t *b, double seconds);

#endif
