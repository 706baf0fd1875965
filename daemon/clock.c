/* The daemon's clock: the system's, or a manual one that only control requests move. */
#include "internal.h"

#include <stdio.h>
#include <time.h>

static bool s_manual;
static atomic_int_fast64_t s_now;

void sc__clock_init(bool manual, sc_time_t start)
{
    s_manual = manual;
    atomic_store(&s_now, start);
}

bool sc__clock_manual(void)
{
    return s_manual;
}

sc_time_t sc__clock_now(void)
{
    if (s_manual)
        return atomic_load(&s_now);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (sc_time_t)ts.tv_sec * SC_USEC_PER_SEC + ts.tv_nsec / 1000;
}

void sc__clock_set(sc_time_t t)
{
    atomic_store(&s_now, t);
}

int64_t sc__mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t sc__mono_ms(void)
{
    return sc__mono_us() / 1000;
}

void sc__clock_save(sc__daemon_t *d)
{
    char now[SC_TIME_LEN], err[512];
    const char *p[1] = {sc_time_format(sc__clock_now(), now)};
    int rc;
    if (!d->conn || PQstatus(d->conn) != CONNECTION_OK) {
        PQfinish(d->conn);
        d->conn = sc__db_connect(d->conninfo, "main", err, sizeof err);
    }
    if (d->conn)
        PQclear(sc_pq_exec(d->conn,
                           "INSERT INTO core.clock (id, now) VALUES (1, $1)"
                           " ON CONFLICT (id) DO UPDATE SET now = EXCLUDED.now",
                           1, p, &rc));
}
