/*
 * The journal's tail in memory: the events committed most recently, kept so that plugin
 * runners take them from here instead of reading each one back from the database (the read
 * was a third of a plugin's cost: every event read back and turned to text by each of the
 * plugins that take its type).
 *
 * The tail holds the ids [lo, hi] and knows every one of them: an event, or a number no
 * event has. That is what lets a runner with its cursor in the range skip the database. It
 * rests on how numbers are drawn (004_journal_append.sql): a transaction draws one number
 * per row offered, in input order, under the journal's lock, and commits before the next
 * draws; the rows the unique key refused leave their numbers unused. So the committer of a
 * batch knows the whole run of numbers its batch drew, and a run that starts right after
 * the tail's end leaves nothing unknown between them. A run that does not (numbers drawn
 * elsewhere: another process, a rolled-back batch, a batch of resends only, a runner's
 * emitted events not handed over yet) leaves the numbers between marked unknown: runners
 * read just those from the database and go on with the tail after them. (The tail had
 * started afresh there, and every runner a few events behind read all of them back: at one
 * event in flight, after each resend.) A run handed over late fills in the unknown numbers
 * it drew; a gap as long as the tail starts it afresh.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

struct sc__tev {
    atomic_int refs;
    size_t data_len;
    sc_event_t ev; /* strings point into text */
    const char *data;
    char text[];
};

/* The slot of a number the tail does not know: the database does. */
static sc__tev_t s_unknown_slot;
#define S_UNKNOWN (&s_unknown_slot)

/*
 * Appends write under the lock, takes read under it. Writers come first: a take that lets go
 * of it halfway (S_HOLD_IDS) cannot take it straight back while intake waits to append.
 */
static struct {
    pthread_rwlock_t lock;
    sc__tev_t **slot; /* slot[id % cap]; NULL for a number no event has, or S_UNKNOWN */
    size_t cap;
    int64_t lo, hi; /* ids known; empty when hi < lo */
} s_tail = {.lock = PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP};

void sc__tail_init(size_t cap)
{
    s_tail.cap = cap;
    s_tail.slot = cap ? calloc(cap, sizeof *s_tail.slot) : NULL;
    if (!s_tail.slot)
        s_tail.cap = 0;
    s_tail.lo = 1;
    s_tail.hi = 0;
}

void sc__tev_release(sc__tev_t *t)
{
    if (t && atomic_fetch_sub(&t->refs, 1) == 1)
        free(t);
}

static void s_drop(int64_t id)
{
    sc__tev_t **s = &s_tail.slot[(size_t)id % s_tail.cap];
    if (*s != S_UNKNOWN)
        sc__tev_release(*s);
    *s = NULL;
}

/* Puts t (an event, NULL, or S_UNKNOWN) at the tail's end, dropping its oldest when full. */
static void s_push(sc__tev_t *t)
{
    if (s_tail.hi - s_tail.lo + 1 == (int64_t)s_tail.cap) {
        s_drop(s_tail.lo);
        s_tail.lo++;
    }
    s_tail.hi++;
    s_tail.slot[(size_t)s_tail.hi % s_tail.cap] = t;
}

/* Numbers [first, first + k) drawn before the tail's end, handed over now: the unknown
 * ones among them are known at last. The others are released. */
static void s_fill(int64_t first, sc__tev_t **made, size_t k)
{
    for (size_t i = 0; i < k; i++) {
        int64_t id = first + (int64_t)i;
        sc__tev_t **s = &s_tail.slot[(size_t)id % s_tail.cap];
        if (id >= s_tail.lo && id <= s_tail.hi && *s == S_UNKNOWN)
            *s = made[i];
        else
            sc__tev_release(made[i]);
    }
}

void sc__tail_free(void)
{
    pthread_rwlock_wrlock(&s_tail.lock);
    for (int64_t id = s_tail.lo; s_tail.cap && id <= s_tail.hi; id++)
        s_drop(id);
    free(s_tail.slot);
    s_tail.slot = NULL;
    s_tail.cap = 0;
    s_tail.lo = 1;
    s_tail.hi = 0;
    pthread_rwlock_unlock(&s_tail.lock);
}

/* One allocation holding the event and its strings. */
static sc__tev_t *s_tev_new(const sc__jentry_t *e)
{
    const char *str[6] = {e->type, e->school, e->district, e->source, e->source_id, e->actor};
    size_t len[6], total = e->data_len + 1;
    for (int i = 0; i < 6; i++)
        total += len[i] = str[i] ? strlen(str[i]) + 1 : 0;
    sc__tev_t *t = malloc(sizeof *t + total);
    if (!t)
        return NULL;
    atomic_init(&t->refs, 1);
    char *w = t->text;
    const char *copy[6];
    for (int i = 0; i < 6; i++) {
        copy[i] = str[i] ? memcpy(w, str[i], len[i]) : NULL;
        w += len[i];
    }
    memcpy(w, e->data, e->data_len);
    w[e->data_len] = '\0';
    t->data = w;
    t->data_len = e->data_len;
    t->ev = (sc_event_t){.id = e->event,
                         .type = copy[0],
                         .school = copy[1],
                         .district = copy[2],
                         .source = copy[3],
                         .source_id = copy[4],
                         .actor = copy[5],
                         .occurred_at = e->occurred_at,
                         .received_at = e->received_at};
    return t;
}

static void s_release_all(sc__tev_t **t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sc__tev_release(t[i]);
}

/* Starts the tail afresh at `from`, empty. */
static void s_restart(int64_t from)
{
    for (int64_t id = s_tail.lo; id <= s_tail.hi; id++)
        s_drop(id);
    s_tail.lo = from;
    s_tail.hi = from - 1;
}

void sc__tail_append(const sc__jentry_t *e, size_t n)
{
    if (!s_tail.cap || n == 0)
        return;
    /* An event sent without a district may have been given its school's by the database:
     * the tail would not hold what the journal does. Such a batch is read from there. */
    for (size_t i = 0; i < n; i++)
        if (e[i].school && !e[i].district && !e[i].duplicate)
            return;
    /* Row i of the batch drew number first + i; a new row's number says where the run began. */
    int64_t first = 0;
    for (size_t i = 0; i < n && !first; i++)
        if (!e[i].duplicate)
            first = e[i].event - (int64_t)i;
    if (!first)
        return; /* resends only: the numbers they drew stay unknown to the tail */

    /* Made before taking the lock, which the runners' takes wait on. Of a run longer than
     * the tail only the newest rows would stay: the others are not made at all. */
    size_t skip = n > s_tail.cap ? n - s_tail.cap : 0, k = n - skip;
    sc__tev_t **made = malloc(k * sizeof *made);
    for (size_t i = 0; made && i < k; i++) {
        const sc__jentry_t *x = &e[skip + i];
        if (!(made[i] = x->duplicate ? NULL : s_tev_new(x)) && !x->duplicate) {
            k = i; /* out of memory: the run is left out, its numbers unknown */
            s_release_all(made, k);
            free(made);
            made = NULL;
        }
    }
    if (!made)
        return;

    pthread_rwlock_wrlock(&s_tail.lock);
    int64_t from = first + (int64_t)skip;
    if (from <= s_tail.hi) {
        /* Committed before what the tail holds, handed over after it (a runner's emitted
         * events may overtake the ingest thread's batch). */
        s_fill(from, made, k);
    } else {
        if (s_tail.hi < s_tail.lo || from - s_tail.hi - 1 >= (int64_t)s_tail.cap)
            s_restart(from);
        while (s_tail.hi + 1 < from) /* drawn elsewhere, or not handed over yet */
            s_push(S_UNKNOWN);
        for (size_t i = 0; i < k; i++)
            s_push(made[i]);
    }
    pthread_rwlock_unlock(&s_tail.lock);
    free(made);
}

/*
 * A take looks at this many ids at most with the lock held, then lets intake append (its
 * batch's acks wait on the lock) before it goes on. A plugin with few events of its own, or
 * the `plugins` reply's lag for an idle one, looks through tens of thousands of ids: 5–22 ms
 * with the lock held at a burst, a stall of intake every time a monitor asked.
 */
#define S_HOLD_IDS 1024
#define S_PREFIX_LENS 16 /* prefix lengths measured once a take; more are measured per id */

/* Whether type starts with one of prefixes (len: the first lengths, n of them known). */
static bool s_matches(const char *type, const char *const *prefixes, const size_t *len, size_t n)
{
    for (size_t i = 0; prefixes && prefixes[i]; i++)
        if (strncmp(type, prefixes[i], i < n ? len[i] : strlen(prefixes[i])) == 0)
            return true;
    return false;
}

int sc__tail_take(int64_t after, const char *const *prefixes, size_t max, size_t scan,
                  sc__tev_t **out, int64_t *upto, int64_t *lo)
{
    size_t len[S_PREFIX_LENS], nlen = 0;
    for (; prefixes && prefixes[nlen] && nlen < S_PREFIX_LENS; nlen++)
        len[nlen] = strlen(prefixes[nlen]);
    int n = 0;
    pthread_rwlock_rdlock(&s_tail.lock);
    *lo = s_tail.lo <= s_tail.hi ? s_tail.lo : INT64_MAX;
    if (!s_tail.cap || after < s_tail.lo - 1 || after >= s_tail.hi) {
        pthread_rwlock_unlock(&s_tail.lock);
        return -1;
    }
    int64_t id = after + 1;
    if (id >= s_tail.lo && s_tail.slot[(size_t)id % s_tail.cap] == S_UNKNOWN) {
        /* Numbers the database knows: the tail goes on after them. */
        while (id <= s_tail.hi && s_tail.slot[(size_t)id % s_tail.cap] == S_UNKNOWN)
            id++;
        *lo = id;
        pthread_rwlock_unlock(&s_tail.lock);
        return -1;
    }
    int64_t end = s_tail.hi;
    if (scan && end > after + (int64_t)scan)
        end = after + (int64_t)scan;
    for (int64_t held = 0; id <= end && (size_t)n < max; id++) {
        if (++held == S_HOLD_IDS) {
            pthread_rwlock_unlock(&s_tail.lock);
            pthread_rwlock_rdlock(&s_tail.lock);
            held = 0;
            if (id < s_tail.lo) { /* dropped meanwhile (a burst went round the tail) */
                end = id - 1;     /* the next take reads from the database */
                break;
            }
        }
        sc__tev_t *t = s_tail.slot[(size_t)id % s_tail.cap];
        if (t == S_UNKNOWN) {
            end = id - 1; /* the next take reads these from the database */
            break;
        }
        if (t && s_matches(t->ev.type, prefixes, len, nlen)) {
            atomic_fetch_add(&t->refs, 1);
            out[n++] = t;
        }
    }
    *upto = n > 0 && (size_t)n == max ? out[n - 1]->ev.id : end;
    pthread_rwlock_unlock(&s_tail.lock);
    return n;
}

const sc_event_t *sc__tev_event(const sc__tev_t *t, const char **data, size_t *data_len)
{
    *data = t->data;
    *data_len = t->data_len;
    return &t->ev;
}
