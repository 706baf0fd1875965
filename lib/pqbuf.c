/* PostgreSQL's binary format: one-dimensional arrays as parameters, COPY rows. */
#include <safecampus/util.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Microseconds between the Unix epoch and PostgreSQL's, 2000-01-01. */
#define S_PG_EPOCH_USEC (INT64_C(946684800) * SC_USEC_PER_SEC)

int sc_pqbuf_reserve(sc_pqbuf_t *b, size_t more)
{
    if (b->len + more <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        return -ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

void sc_pqbuf_free(sc_pqbuf_t *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

int sc_pqbuf_put(sc_pqbuf_t *b, const void *p, size_t n)
{
    if (sc_pqbuf_reserve(b, n) < 0)
        return -ENOMEM;
    memcpy(b->p + b->len, p, n);
    b->len += n;
    return 0;
}

int sc_pqbuf_put16(sc_pqbuf_t *b, uint16_t v)
{
    v = htons(v);
    return sc_pqbuf_put(b, &v, 2);
}

int sc_pqbuf_put32(sc_pqbuf_t *b, uint32_t v)
{
    v = htonl(v);
    return sc_pqbuf_put(b, &v, 4);
}

int sc_pqbuf_put64(sc_pqbuf_t *b, uint64_t v)
{
    if (sc_pqbuf_put32(b, (uint32_t)(v >> 32)) < 0)
        return -ENOMEM;
    return sc_pqbuf_put32(b, (uint32_t)v);
}

int sc_pqarray_begin(sc_pqbuf_t *b, size_t n, uint32_t oid, bool has_null)
{
    if (sc_pqbuf_put32(b, n ? 1 : 0) < 0 || sc_pqbuf_put32(b, has_null) < 0 ||
        sc_pqbuf_put32(b, oid) < 0)
        return -ENOMEM;
    if (n && (sc_pqbuf_put32(b, (uint32_t)n) < 0 || sc_pqbuf_put32(b, 1) < 0))
        return -ENOMEM;
    return 0;
}

int sc_pqfield_text(sc_pqbuf_t *b, const char *s, size_t len)
{
    if (!s)
        return sc_pqbuf_put32(b, UINT32_MAX); /* -1: NULL */
    if (sc_pqbuf_put32(b, (uint32_t)len) < 0)
        return -ENOMEM;
    return sc_pqbuf_put(b, s, len);
}

int sc_pqfield_int8(sc_pqbuf_t *b, int64_t v)
{
    if (sc_pqbuf_put32(b, 8) < 0)
        return -ENOMEM;
    return sc_pqbuf_put64(b, (uint64_t)v);
}

int sc_pqfield_time(sc_pqbuf_t *b, sc_time_t t)
{
    return sc_pqfield_int8(b, t - S_PG_EPOCH_USEC);
}

int sc_pqfield_jsonb(sc_pqbuf_t *b, const char *s, size_t len)
{
    char version = 1; /* jsonb's binary format: a version byte, then the text */
    if (sc_pqbuf_put32(b, (uint32_t)len + 1) < 0 || sc_pqbuf_put(b, &version, 1) < 0)
        return -ENOMEM;
    return sc_pqbuf_put(b, s, len);
}

int sc_pqbuf_puts(sc_pqbuf_t *b, const char *s)
{
    return sc_pqbuf_put(b, s, strlen(s));
}

int sc_pqbuf_json_str(sc_pqbuf_t *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    if (!s)
        return sc_pqbuf_put(b, "null", 4);
    size_t n = strlen(s);
    /* At worst every byte becomes \u00XX. */
    if (sc_pqbuf_reserve(b, 6 * n + 2) < 0)
        return -ENOMEM;
    char *o = b->p + b->len;
    *o++ = '"';
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            *o++ = '\\';
            *o++ = (char)c;
        } else if (c < 0x20) {
            memcpy(o, "\\u00", 4);
            o[4] = hex[c >> 4];
            o[5] = hex[c & 15];
            o += 6;
        } else {
            *o++ = (char)c;
        }
    }
    *o++ = '"';
    b->len = (size_t)(o - b->p);
    return 0;
}

static int s_key(sc_pqbuf_t *b, const char *key)
{
    return sc_pqbuf_put(b, "\"", 1) < 0 || sc_pqbuf_puts(b, key) < 0 ||
                   sc_pqbuf_put(b, "\":", 2) < 0
               ? -ENOMEM
               : 0;
}

int sc_pqbuf_json_member(sc_pqbuf_t *b, const char *key, const char *s)
{
    return s_key(b, key) < 0 || sc_pqbuf_json_str(b, s) < 0 || sc_pqbuf_put(b, ",", 1) < 0 ? -ENOMEM
                                                                                           : 0;
}

int sc_pqbuf_json_member_raw(sc_pqbuf_t *b, const char *key, const char *json)
{
    return s_key(b, key) < 0 || sc_pqbuf_puts(b, json) < 0 || sc_pqbuf_put(b, ",", 1) < 0 ? -ENOMEM
                                                                                          : 0;
}

static int s_dump(const char *p, size_t n, void *b)
{
    return sc_pqbuf_put(b, p, n) < 0 ? -1 : 0;
}

int sc_pqbuf_json_member_value(sc_pqbuf_t *b, const char *key, const json_t *v)
{
    if (!v)
        return sc_pqbuf_json_member_raw(b, key, "null");
    return s_key(b, key) < 0 ||
                   json_dump_callback(v, s_dump, b, JSON_COMPACT | JSON_ENCODE_ANY) < 0 ||
                   sc_pqbuf_put(b, ",", 1) < 0
               ? -ENOMEM
               : 0;
}

int sc_pqbuf_json_row_end(sc_pqbuf_t *b)
{
    if (b->len > 0 && b->p[b->len - 1] == ',')
        b->p[b->len - 1] = '}';
    else if (sc_pqbuf_put(b, "}", 1) < 0)
        return -ENOMEM;
    return sc_pqbuf_put(b, ",", 1);
}

int sc_pqbuf_json_rows(sc_pqbuf_t *out, const char *rows, size_t len)
{
    out->len = 0;
    if (sc_pqbuf_reserve(out, len + 2) < 0)
        return -ENOMEM;
    out->p[0] = '[';
    memcpy(out->p + 1, rows, len - 1); /* without the last row's comma */
    out->p[len] = ']';
    out->p[len + 1] = '\0'; /* after the array, not counted: len is its bytes, as elsewhere */
    out->len = len + 1;
    return 0;
}
