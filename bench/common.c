/* bench/common.c: clocks, the event mix and latency summaries. */
#include "bench.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t bench_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

sc_time_t bench_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (sc_time_t)ts.tv_sec * SC_USEC_PER_SEC + ts.tv_nsec / 1000;
}

uint64_t bench_mix(uint64_t x)
{
    x += UINT64_C(0x9e3779b97f4a7c15);
    x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
    return x ^ (x >> 31);
}

/* ---- the event mix ---- */

#define S_N(a) (sizeof(a) / sizeof((a)[0]))

static const char *const s_gates[] = {"gate-east", "gate-west", "gate-north"};
static const char *const s_visitors[] = {"Chen Wei",  "Zhang Min", "Wang Lei",  "Liu Yang",
                                         "Zhao Jing", "Huang Tao", "Zhou Qian", "Wu Hao"};
static const char *const s_orgs[] = {"Lakeside Water Supply Co.",  "District Education Bureau",
                                     "Green Valley Catering Ltd.", "City Fire Rescue Brigade",
                                     "Parent committee, grade 3",  "Sunrise Elevator Service"};
static const char *const s_purposes[] = {
    "quarterly meter reading and a check of the kitchen water pipes",
    "unannounced inspection of the school canteen and food sample records",
    "delivery of lunch ingredients; cold-chain certificate shown at the gate",
    "fire extinguisher pressure check in teaching buildings A and B",
    "meeting the head teacher of class 2 about the spring outing plan",
    "annual elevator maintenance, service report to the general office"};
static const char *const s_hosts[] = {"safety", "principal", "office"};

static const char *const s_diagnoses[] = {"common cold, no fever", "tension headache",
                                          "dental treatment", "sprained ankle at home",
                                          "migraine, seen by family doctor"};
static const char *const s_personal[] = {
    "family matter", "medical check-up appointment with parents",
    "travelling to grandparents for a funeral", "parent-requested leave, form on file"};

static const struct {
    const char *title, *location, *category, *description;
} s_hazards[] = {
    {"loose handrail, stair B second floor", "teaching building B, stair 2", "building",
     "the handrail moves by about 2 cm when pushed; two brackets have lost their screws"},
    {"emergency light not working near room 305", "teaching building A, third floor corridor",
     "electrical", "the battery test button gives no light; label shows last check in March"},
    {"fire door propped open with a chair", "gymnasium, north exit", "fire",
     "the self-closing door was held open during the lunch break; the chair was removed"},
    {"broken tile at the playground edge", "sports ground, near the long-jump pit", "surroundings",
     "a cracked tile with a sharp corner about 3 cm high, pupils run past it"},
    {"扶手松动，楼梯踏步防滑条脱落", "综合楼东侧楼梯", "building",
     "二楼至三楼之间有两级防滑条翘起，课间人流较大，已设临时警示牌"},
    {"exposed wiring under the science lab bench", "laboratory building, room 104", "electrical",
     "insulation worn through on a socket lead; the socket was switched off and taped"},
};

static size_t s_append(char *buf, size_t cap, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static size_t s_append(char *buf, size_t cap, size_t n, const char *fmt, ...)
{
    if (n >= cap)
        return n;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf + n, cap - n, fmt, ap);
    va_end(ap);
    return k < 0 ? cap : n + (size_t)k;
}

void bench_event_make(bench_event_t *ev, const char *source, const char *tag, unsigned client,
                      uint64_t seq, sc_time_t occurred_at)
{
    uint64_t t = 14695981039346656037ULL; /* FNV-1a of the tag: runs with other tags differ */
    for (const char *c = tag; *c; c++)
        t = (t ^ (unsigned char)*c) * 1099511628211ULL;
    uint64_t h = bench_mix(t ^ ((uint64_t)client << 48) ^ seq);
    unsigned pick = (unsigned)(h % 100);
    unsigned school = (unsigned)((h >> 8) % BENCH_SCHOOLS) + 1;
    unsigned klass = (unsigned)((h >> 16) % BENCH_CLASSES) + 1;
    unsigned student = (unsigned)((h >> 24) % BENCH_STUDENTS) + 1;
    uint64_t r = h >> 32;
    char *d = ev->data;
    size_t cap = sizeof ev->data, n = 0;

    snprintf(ev->school, sizeof ev->school, "sch-b%02u", school);
    ev->district = BENCH_DISTRICT;
    snprintf(ev->source, sizeof ev->source, "%s", source);
    snprintf(ev->id, sizeof ev->id, "%s.%u.%llu", tag, client, (unsigned long long)seq);
    ev->occurred_at = occurred_at;
    ev->actor[0] = '\0';

    if (pick < 44) { /* a pupil's card at the gate: the bulk of the traffic */
        ev->type = "gate.entry";
        n = s_append(d, cap, n,
                     "{\"kind\":\"pupil\",\"card\":\"card-b%02u-%u-%02u\",\"gate\":\"%s\"}", school,
                     klass, student, s_gates[r % S_N(s_gates)]);
    } else if (pick < 55) { /* a visitor, registered at the gate */
        ev->type = "gate.entry";
        snprintf(ev->actor, sizeof ev->actor, "p-b%02u-guard", school);
        n = s_append(
            d, cap, n,
            "{\"kind\":\"visitor\",\"visit\":\"v-%s-%u-%llu\",\"name\":\"%s\","
            "\"organisation\":\"%s\",\"purpose\":\"%s\",\"host\":\"p-b%02u-%s\",\"gate\":\"%s\"}",
            tag, client, (unsigned long long)seq, s_visitors[r % S_N(s_visitors)],
            s_orgs[(r >> 4) % S_N(s_orgs)], s_purposes[(r >> 8) % S_N(s_purposes)], school,
            s_hosts[(r >> 12) % S_N(s_hosts)], s_gates[(r >> 16) % S_N(s_gates)]);
    } else if (pick < 85) { /* an absence: a past school day, so no date is in the future */
        char date[16];
        int64_t today = occurred_at / SC_USEC_PER_SEC / 86400;
        sc_date_format(today - 1 - (int64_t)(r % 700), date);
        ev->type = "health.absence.reported";
        snprintf(ev->actor, sizeof ev->actor, "p-b%02u-doctor", school);
        n = s_append(d, cap, n,
                     "{\"student\":\"st-b%02u-%u-%02u\",\"class\":\"c-%u\",\"date\":\"%s\",",
                     school, klass, student, klass, date);
        /* Illness absences come with a diagnosis and symptoms no cluster rule groups, so the
         * load exercises registration, not the cluster and tracing alarms. */
        if (r % 3 == 0)
            n = s_append(d, cap, n,
                         "\"reason\":\"illness\",\"symptoms\":[\"%s\"],\"seen_doctor\":true,"
                         "\"diagnosis\":\"%s\",\"note\":\"reported by phone at 07:40, parent "
                         "will bring a note\"}",
                         (r >> 4) % 2 ? "headache" : "other",
                         s_diagnoses[(r >> 8) % S_N(s_diagnoses)]);
        else
            n = s_append(d, cap, n, "\"reason\":\"personal\",\"note\":\"%s\"}",
                         s_personal[(r >> 8) % S_N(s_personal)]);
    } else { /* a general hazard found on a walk-round */
        unsigned k = (unsigned)(r % S_N(s_hazards));
        ev->type = "hazard.reported";
        snprintf(ev->actor, sizeof ev->actor, "p-b%02u-safety", school);
        n = s_append(d, cap, n,
                     "{\"hazard\":\"hz-%s-%u-%llu\",\"title\":\"%s\",\"risk\":\"general\","
                     "\"location\":\"%s\",\"category\":\"%s\",\"description\":\"%s\","
                     "\"reporter\":\"p-b%02u-safety\"}",
                     tag, client, (unsigned long long)seq, s_hazards[k].title,
                     s_hazards[k].location, s_hazards[k].category, s_hazards[k].description,
                     school);
    }
    ev->data_len = n < cap ? n : cap - 1;
}

size_t bench_event_envelope(const bench_event_t *ev, char *buf, size_t cap)
{
    char when[SC_TIME_LEN];
    size_t n =
        s_append(buf, cap, 0,
                 "{\"type\":\"%s\",\"school\":\"%s\",\"source\":\"%s\",\"id\":\"%s\","
                 "\"occurred_at\":\"%s\",",
                 ev->type, ev->school, ev->source, ev->id, sc_time_format(ev->occurred_at, when));
    if (ev->actor[0])
        n = s_append(buf, cap, n, "\"actor\":\"%s\",", ev->actor);
    n = s_append(buf, cap, n, "\"data\":%.*s}", (int)ev->data_len, ev->data);
    return n < cap ? n : 0;
}

uint64_t bench_id_seq(const char *id, size_t len)
{
    size_t i = len;
    while (i > 0 && id[i - 1] != '.')
        i--;
    if (i == 0 || i == len)
        return 0;
    uint64_t seq = 0;
    for (; i < len; i++) {
        if (id[i] < '0' || id[i] > '9')
            return 0;
        seq = seq * 10 + (uint64_t)(id[i] - '0');
    }
    return seq;
}

/* ---- latency samples ---- */

int bench_lat_add(bench_lat_t *l, int64_t ns)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4096;
        int64_t *v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = ns;
    return 0;
}

int bench_lat_merge(bench_lat_t *dst, const bench_lat_t *src)
{
    for (size_t i = 0; i < src->n; i++)
        if (bench_lat_add(dst, src->v[i]) < 0)
            return -ENOMEM;
    return 0;
}

void bench_lat_free(bench_lat_t *l)
{
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

static int s_cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The q-quantile of sorted samples (nearest rank), in milliseconds. */
static json_t *s_quantile(const bench_lat_t *l, double q)
{
    if (!l->n)
        return json_null();
    size_t k = (size_t)(q * (double)l->n);
    if (k >= l->n)
        k = l->n - 1;
    return json_real((double)l->v[k] / 1e6);
}

json_t *bench_lat_summary(bench_lat_t *l)
{
    double sum = 0;
    qsort(l->v, l->n, sizeof *l->v, s_cmp64);
    for (size_t i = 0; i < l->n; i++)
        sum += (double)l->v[i];
    return json_pack("{s:I, s:o, s:o, s:o, s:o, s:o, s:o}", "n", (json_int_t)l->n, "mean",
                     l->n ? json_real(sum / (double)l->n / 1e6) : json_null(), "p50",
                     s_quantile(l, 0.5), "p90", s_quantile(l, 0.9), "p99", s_quantile(l, 0.99),
                     "p999", s_quantile(l, 0.999), "max", s_quantile(l, 1.0));
}
