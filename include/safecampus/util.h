/* safecampus helpers shared by the daemon and plugins: time, checks on JSON fields, libpq. */
#ifndef SAFECAMPUS_UTIL_H
#define SAFECAMPUS_UTIL_H

#include <safecampus/plugin.h>

#include <errno.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- time ---------------------------------------------------------------- */

/* Longest output of sc_time_format, with its NUL. */
#define SC_TIME_LEN 40

/*
 * Parses an RFC 3339 date-time ("2026-06-18T08:15:00+08:00", "…Z", optional
 * fraction up to microseconds, 't'/'z' accepted, a space instead of 'T' not),
 * from year 0001 to 9999 in UTC.
 * Returns 0 and sets *out, or -EINVAL. Validates calendar ranges and leap days.
 */
int sc_time_parse(const char *s, sc_time_t *out);

/*
 * Writes t as RFC 3339 in UTC ("2026-06-18T00:15:00Z", with ".123456" when
 * there is a fraction) into buf (SC_TIME_LEN bytes). Returns buf.
 */
char *sc_time_format(sc_time_t t, char *buf);

/* Parses "YYYY-MM-DD" into days since 1970-01-01. Returns 0 or -EINVAL. */
int sc_date_parse(const char *s, int64_t *days);

/* Writes days since 1970-01-01 as "YYYY-MM-DD" (11 bytes). Returns buf. */
char *sc_date_format(int64_t days, char *buf);

/* Days since 1970-01-01 of a civil date (proleptic Gregorian). */
int64_t sc_days_from_civil(int y, unsigned m, unsigned d);

/* The longest duration accepted: a thousand years, in seconds. */
#define SC_DURATION_MAX (INT64_C(1000) * 366 * 86400)

/*
 * Parses a duration: an integer of seconds, or digits with one unit among
 * s, m, h, d, w ("90s", "15m", "2h", "7d"), or several ("1h30m").
 * Returns 0 and sets *seconds, or -EINVAL.
 */
int sc_duration_parse(const char *s, int64_t *seconds);

/*
 * Whether tz names a zone of the system's tz database, which PostgreSQL uses
 * too ("Asia/Shanghai", "UTC"). A file check: pure, thread-safe, and far
 * cheaper than asking pg_timezone_names.
 */
bool sc_tz_known(const char *tz);

/* ---- checks on JSON fields -------------------------------------------------
 *
 * Each checks one member of `obj` and, on failure, writes "<prefix><key>: <rule>"
 * into detail and returns -EINVAL; 0 when acceptable (or absent and optional).
 * `prefix` is the path of obj, "data." for an event's data.
 */

#define SC_CODE_MAX 64 /* codes: schools, people, hazards … */

int sc_check_string(const json_t *obj, const char *prefix, const char *key, bool required,
                    size_t max_len, char *detail, size_t dlen);
/* A code: 1..64 characters of letters, digits and - _ . : */
int sc_check_code(const json_t *obj, const char *prefix, const char *key, bool required,
                  char *detail, size_t dlen);
int sc_check_enum(const json_t *obj, const char *prefix, const char *key, bool required,
                  const char *const *allowed, char *detail, size_t dlen);
int sc_check_int(const json_t *obj, const char *prefix, const char *key, bool required,
                 json_int_t min, json_int_t max, char *detail, size_t dlen);
int sc_check_bool(const json_t *obj, const char *prefix, const char *key, bool required,
                  char *detail, size_t dlen);
int sc_check_time(const json_t *obj, const char *prefix, const char *key, bool required,
                  char *detail, size_t dlen);
int sc_check_date(const json_t *obj, const char *prefix, const char *key, bool required,
                  char *detail, size_t dlen);
int sc_check_object(const json_t *obj, const char *prefix, const char *key, bool required,
                    char *detail, size_t dlen);
/* An array of at most max_items; each element checked by the caller. */
int sc_check_array(const json_t *obj, const char *prefix, const char *key, bool required,
                   size_t max_items, char *detail, size_t dlen);
/* An array whose elements are each one of `allowed`. */
int sc_check_enum_array(const json_t *obj, const char *prefix, const char *key, bool required,
                        const char *const *allowed, char *detail, size_t dlen);
/* Refuses members of obj not named in `known` (NULL-terminated). */
int sc_check_known(const json_t *obj, const char *prefix, const char *const *known, char *detail,
                   size_t dlen);

/*
 * Makes s valid UTF-8 in place, for text that may quote a sender's bytes or was
 * cut by snprintf: an invalid byte becomes '?', a sequence cut short at the end
 * is dropped. Returns s.
 */
char *sc_utf8_clean(char *s);

/* Writes "field: rule" style text; returns -EINVAL so callers can `return sc_fail(…)`. */
__attribute__((format(printf, 3, 4))) int sc_fail(char *detail, size_t dlen, const char *fmt, ...);

/* A string member or NULL (borrowed). */
const char *sc_json_str(const json_t *obj, const char *key);
/* An integer member, or def when absent or not an integer. */
json_int_t sc_json_int(const json_t *obj, const char *key, json_int_t def);
/* A boolean member, or def. */
bool sc_json_bool(const json_t *obj, const char *key, bool def);
/* A number member (integer or real), or def. */
double sc_json_num(const json_t *obj, const char *key, double def);
/* A time member parsed as RFC 3339, or def when absent or unparseable. */
sc_time_t sc_json_time(const json_t *obj, const char *key, sc_time_t def);

/* ---- libpq -------------------------------------------------------------- */

/*
 * Runs a parameterised statement (text parameters, text results), prepared the
 * first time it runs on a connection, so it is planned once per connection.
 * Returns the result when its status is COMMAND_OK or TUPLES_OK (caller
 * PQclear()s it); otherwise clears it, sets *rc to sc_pq_error() and returns NULL.
 */
PGresult *sc_pq_exec(PGconn *conn, const char *sql, int nparams, const char *const *params,
                     int *rc);

/*
 * sc_pq_exec, planned afresh at every run instead of once per connection: for a
 * statement over a table that grows by orders of magnitude while the connection
 * lives, whose plan made while the table was small would read all of it later.
 */
PGresult *sc_pq_exec_fresh(PGconn *conn, const char *sql, int nparams, const char *const *params,
                           int *rc);

/*
 * Classifies a failure: -EAGAIN when it is worth retrying (connection lost,
 * serialization failure, deadlock, lock timeout, too many connections,
 * admin shutdown), -EIO otherwise.
 */
int sc_pq_error(PGconn *conn, const PGresult *res);

/* A field as a new JSON value: json/jsonb parsed, integers, booleans, floats, text; NULL → json
 * null. */
json_t *sc_pq_value(const PGresult *res, int row, int col);

/* All rows as a new array of objects keyed by column name. */
json_t *sc_pq_rows(const PGresult *res);

/* A timestamptz field in text form → sc_time_t, or def when NULL. */
sc_time_t sc_pq_time(const PGresult *res, int row, int col, sc_time_t def);

/* ---- PostgreSQL's binary format: arrays as parameters, COPY rows ----------
 * For many rows in one statement: build each column as a one-dimensional
 * array (sc_pqarray_begin, then one sc_pqfield_* per element) and pass the
 * buffers as binary parameters (format 1), e.g. to INSERT … SELECT FROM
 * unnest($1::text[], …). The same fields make the columns of a binary COPY.
 * Every function returns 0 or -ENOMEM; the buffer grows as needed.
 */
typedef struct sc_pqbuf {
    char *p;
    size_t len, cap;
} sc_pqbuf_t;

/* Element type OIDs (pg_type.h) for sc_pqarray_begin. */
enum { SC_PQ_INT8OID = 20, SC_PQ_TEXTOID = 25, SC_PQ_TIMESTAMPTZOID = 1184, SC_PQ_JSONBOID = 3802 };

int sc_pqbuf_reserve(sc_pqbuf_t *b, size_t more);
/* Frees the bytes and empties the buffer (reusable). */
void sc_pqbuf_free(sc_pqbuf_t *b);
/* Raw bytes, and big-endian integers. */
int sc_pqbuf_put(sc_pqbuf_t *b, const void *p, size_t n);
int sc_pqbuf_put16(sc_pqbuf_t *b, uint16_t v);
int sc_pqbuf_put32(sc_pqbuf_t *b, uint32_t v);
int sc_pqbuf_put64(sc_pqbuf_t *b, uint64_t v);
/* A one-dimensional array header for n elements of type oid; the elements follow. */
int sc_pqarray_begin(sc_pqbuf_t *b, size_t n, uint32_t oid, bool has_null);
/* One length-prefixed field: text of len bytes (s NULL: SQL NULL), int8, timestamptz, jsonb. */
int sc_pqfield_text(sc_pqbuf_t *b, const char *s, size_t len);
int sc_pqfield_int8(sc_pqbuf_t *b, int64_t v);
int sc_pqfield_time(sc_pqbuf_t *b, sc_time_t t);
int sc_pqfield_jsonb(sc_pqbuf_t *b, const char *s, size_t len);

/*
 * JSON text straight into a buffer, for a statement that takes many rows as one
 * JSON parameter: a row written as text costs a fraction of building jansson
 * values and dumping them. sc_pqbuf_puts appends a C string as it is;
 * sc_pqbuf_json_str appends s as a JSON string literal, escaped as RFC 8259
 * asks (s valid UTF-8), or null when s is NULL.
 */
int sc_pqbuf_puts(sc_pqbuf_t *b, const char *s);
int sc_pqbuf_json_str(sc_pqbuf_t *b, const char *s);
/*
 * An object's member "key":value followed by a comma (the caller turns the last
 * one into the object's closing brace): the value s as a JSON string (NULL:
 * null), JSON text written as it is (a number, true, null), or a jansson value
 * (borrowed; NULL: null).
 */
int sc_pqbuf_json_member(sc_pqbuf_t *b, const char *key, const char *s);
int sc_pqbuf_json_member_raw(sc_pqbuf_t *b, const char *key, const char *json);
int sc_pqbuf_json_member_value(sc_pqbuf_t *b, const char *key, const json_t *v);
/*
 * Rows kept one after another, each "{" + its members + "},": sc_pqbuf_json_row_end
 * closes the row being written (its last member's comma becomes the brace, and the
 * row's own comma follows); sc_pqbuf_json_rows makes `out` the NUL-terminated JSON
 * array of the len bytes of such rows at `rows` (len > 0).
 */
int sc_pqbuf_json_row_end(sc_pqbuf_t *b);
int sc_pqbuf_json_rows(sc_pqbuf_t *out, const char *rows, size_t len);

#ifdef __cplusplus
}
#endif
#endif
