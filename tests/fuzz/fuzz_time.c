/*
 * libFuzzer target: the time helpers every validator and the config rely on
 * (lib/time.c). The input, up to its first NUL, is given to each parser; what
 * parses must survive a round trip:
 *
 *  - sc_time_parse → sc_time_format → sc_time_parse gives the same instant
 *    (the daemon publishes occurred_at in sc_time_format's form, and plugins
 *    and subscribers read it back);
 *  - sc_date_parse → sc_date_format gives the same text, and parses back;
 *  - sc_duration_parse gives a non-negative count that parses back from
 *    "<n>s" and "<n>".
 *
 * The first 8 bytes, read as an sc_time_t and as a day count, also go through
 * the formatters: any instant from 0001-01-01 to 9999-12-31 must format into a
 * string that parses back to it.
 */
#include "common.h"

#include <safecampus/util.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_MAX 256

/* 0001-01-01 and 10000-01-01 (sc_time_parse's range, in UTC), in days since 1970-01-01. */
#define S_DAY_MIN INT64_C(-719162)
#define S_DAY_END INT64_C(2932897)
#define S_USEC_PER_DAY (INT64_C(86400) * SC_USEC_PER_SEC)

static void s_time(const char *s)
{
    sc_time_t t, t2;
    char buf[SC_TIME_LEN];
    if (sc_time_parse(s, &t) < 0)
        return;
    sc_time_format(t, buf);
    if (strlen(buf) >= SC_TIME_LEN)
        fz_fail("time \"%s\": formatted longer than SC_TIME_LEN", s);
    if (sc_time_parse(buf, &t2) < 0)
        fz_fail("time \"%s\": formatted as \"%s\", which does not parse", s, buf);
    if (t2 != t)
        fz_fail("time \"%s\": %" PRId64 ", formatted \"%s\", read back as %" PRId64, s, t, buf, t2);
}

static void s_date(const char *s)
{
    int64_t d, d2;
    char buf[16];
    if (sc_date_parse(s, &d) < 0)
        return;
    sc_date_format(d, buf);
    if (strcmp(buf, s) != 0)
        fz_fail("date \"%s\": formatted back as \"%s\"", s, buf);
    if (sc_date_parse(buf, &d2) < 0 || d2 != d)
        fz_fail("date \"%s\": does not read back", s);
    /* The time at midnight UTC of that date, when there is one (not in year 0000), is that day. */
    char t[SC_TIME_LEN + 8];
    sc_time_t ts;
    snprintf(t, sizeof t, "%sT00:00:00Z", s);
    if (sc_time_parse(t, &ts) == 0 && ts != d * S_USEC_PER_DAY)
        fz_fail("date \"%s\": its midnight \"%s\" is not day %" PRId64, s, t, d);
}

static void s_duration(const char *s)
{
    int64_t secs, again;
    char buf[32];
    if (sc_duration_parse(s, &secs) < 0)
        return;
    if (secs < 0)
        fz_fail("duration \"%s\": negative (%" PRId64 ")", s, secs);
    snprintf(buf, sizeof buf, "%" PRId64 "s", secs);
    if (sc_duration_parse(buf, &again) < 0 || again != secs)
        fz_fail("duration \"%s\" = %" PRId64 " s: \"%s\" does not read back", s, secs, buf);
    snprintf(buf, sizeof buf, "%" PRId64, secs);
    if (sc_duration_parse(buf, &again) < 0 || again != secs)
        fz_fail("duration \"%s\" = %" PRId64 " s: \"%s\" does not read back", s, secs, buf);
}

/* Any instant in years 0001..9999 formats into a string that reads back to it. */
static void s_raw(const uint8_t *data, size_t size)
{
    if (size < 8)
        return;
    uint64_t u;
    memcpy(&u, data, sizeof u);
    int64_t span = (S_DAY_END - S_DAY_MIN) * S_USEC_PER_DAY;
    sc_time_t t = S_DAY_MIN * S_USEC_PER_DAY + (sc_time_t)(u % (uint64_t)span);
    char buf[SC_TIME_LEN];
    sc_time_t t2;
    sc_time_format(t, buf);
    if (sc_time_parse(buf, &t2) < 0 || t2 != t)
        fz_fail("instant %" PRId64 ": formatted \"%s\", which does not read back", t, buf);
    int64_t d = S_DAY_MIN + (int64_t)(u % (uint64_t)(S_DAY_END - S_DAY_MIN)), d2;
    char db[16];
    sc_date_format(d, db);
    if (sc_date_parse(db, &d2) < 0 || d2 != d)
        fz_fail("day %" PRId64 ": formatted \"%s\", which does not read back", d, db);
    /* Out of range: the formatters must still stay in their buffers (ASan watches). */
    sc_time_format((sc_time_t)u, buf);
    sc_date_format((int64_t)(u >> 20), db);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char s[S_MAX + 1];
    size_t n = size < S_MAX ? size : S_MAX;
    memcpy(s, data, n);
    s[n] = '\0';
    s_time(s);
    s_date(s);
    s_duration(s);
    s_raw(data, size);
    return 0;
}
