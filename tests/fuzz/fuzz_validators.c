/*
 * libFuzzer target: every validator in the registry (each plugin's and the
 * core's directory.*), called directly with fuzzed data, without the envelope
 * around it that fuzz_envelope must first get right.
 *
 * Input: a header line, then the data object as JSON:
 *
 *     hazard.reported [SCHOOL|-] [DISTRICT|-]
 *     {"hazard":"hz-1","title":"loose handrail","risk":"general"}
 *
 * SCHOOL defaults to sch-001 and DISTRICT to none ("-" means none), as the
 * envelope would hand them over. Data that is not an object, or nested deeper
 * than the ingest limit allows, is skipped: the envelope rules refuse it before
 * any validator sees it.
 *
 * Fails on crashes, sanitizer reports, and what the plugin contract forbids:
 * a validator that modifies the data, answers differently for the same event
 * (validators are pure), or writes a detail that sc_utf8_clean cannot make
 * valid UTF-8 (the refusal could not be sent).
 */
#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static sc__config_t *s_cfg;
static sc__registry_t *s_reg;
static bool s_verbose; /* SC_FUZZ_VERBOSE=1: each input's result on stderr */
#define S_NOW (INT64_C(1781740800) * SC_USEC_PER_SEC) /* 2026-06-18T00:00:00Z */
#define S_MAX_DEPTH 31 /* ingest.max_depth 32, less the envelope around data */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    sc__log_level = SC_LOG_ERR - 1;
    fz_load(NULL, &s_cfg, &s_reg);
    s_verbose = getenv("SC_FUZZ_VERBOSE") != NULL;
    return 0;
}

static int s_skip(const char *why)
{
    if (s_verbose)
        fprintf(stderr, "fuzz_validators: skipped: %s\n", why);
    return 0;
}

/* Splits "type school district" (at most 3 words of at most 127 bytes). */
static int s_header(const uint8_t *p, size_t n, char words[3][128])
{
    int w = 0;
    size_t i = 0;
    memset(words, 0, 3 * 128);
    while (i < n && w < 3) {
        while (i < n && p[i] == ' ')
            i++;
        size_t len = 0;
        while (i < n && p[i] != ' ') {
            if (len == 127 || p[i] == '\0')
                return -1;
            words[w][len++] = (char)p[i++];
        }
        if (len)
            w++;
    }
    return i < n ? -1 : w;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    if (!nl)
        return s_skip("no header line");
    char words[3][128];
    int nwords = s_header(data, (size_t)(nl - data), words);
    if (nwords < 1)
        return s_skip("bad header");
    const sc__type_t *t = sc__registry_type(s_reg, words[0]);
    if (!t || !t->validate)
        return s_skip("no validator for that type");
    const uint8_t *body = nl + 1;
    size_t blen = size - (size_t)(body - data);
    if (fz_depth(body, blen) > S_MAX_DEPTH)
        return s_skip("nested too deep");
    json_t *doc = json_loadb((const char *)body, blen, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(doc)) {
        json_decref(doc);
        return s_skip("data is not a JSON object");
    }
    const char *school = nwords >= 2 ? words[1] : "sch-001";
    const char *district = nwords >= 3 ? words[2] : "-";
    sc_event_t ev = {
        .type = t->name,
        .school = strcmp(school, "-") == 0 ? NULL : school,
        .district = strcmp(district, "-") == 0 ? NULL : district,
        .source = "fuzz",
        .source_id = "fz-1",
        .actor = "p-1",
        .occurred_at = S_NOW,
        .received_at = S_NOW,
        .data = doc,
    };
    json_t *before = json_deep_copy(doc);
    char d1[512] = "", d2[512] = "";
    int rc1 = t->validate(&ev, d1, sizeof d1);
    if (!json_equal(before, doc))
        fz_fail("%s: the validator modified the data", t->name);
    int rc2 = t->validate(&ev, d2, sizeof d2);
    if (rc1 != rc2 || strcmp(d1, d2) != 0)
        fz_fail("%s: the same event answered %d \"%s\", then %d \"%s\"", t->name, rc1, d1, rc2, d2);
    if (s_verbose)
        fprintf(stderr, "fuzz_validators: %s %d %s\n", t->name, rc1, d1);
    if (rc1 > 0)
        fz_fail("%s: the validator returned %d (0 or a negative errno expected)", t->name, rc1);
    if (rc1 < 0 && !fz_utf8(sc_utf8_clean(d2)))
        fz_fail("%s: detail is not valid UTF-8 even cleaned, so the refusal cannot be sent: "
                "\"%s\"",
                t->name, d2);
    json_decref(before);
    json_decref(doc);
    return 0;
}
