/*
 * libFuzzer target: one ingest frame through the envelope rules and the owning
 * validator, exactly as the ingest thread checks it (sc__envelope_parse), with
 * every real plugin loaded, so a well-formed envelope reaches that plugin's
 * validator (or the core's, for directory.*).
 *
 * Besides crashes and sanitizer reports, it fails on what would break the wire
 * contract downstream: a refusal without a detail, data journaled as text that does
 * not read back as the data accepted, or a detail or id that the
 * ingest thread could not put into its JSON reply even after sc_utf8_clean, as
 * s_reply_error does (json_pack refuses invalid UTF-8, and the sender would then
 * get no reply at all).
 *
 * Each frame is also read as from a CURVE connection (sc__envelope_parse_as):
 * a frame accepted as sent must be accepted the same way there, and a source
 * filled in must be the connection's name.
 *
 * Limits are small (max_bytes 3000, max_depth 8) so the too_large paths are
 * reached by inputs libFuzzer produces (-max_len=4096 in scripts/run-fuzz).
 */
#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static sc__config_t *s_cfg;
static sc__registry_t *s_reg;
static bool s_verbose; /* SC_FUZZ_VERBOSE=1: each input's code and detail on stderr */
static const sc__limits_t s_limits = {.max_bytes = 3000, .max_depth = 8};
#define S_NOW (INT64_C(1781740800) * SC_USEC_PER_SEC) /* 2026-06-18T00:00:00Z */
#define S_USER "fuzz-source"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    sc__log_level = SC_LOG_ERR - 1; /* quiet: the loader's notices are not findings */
    fz_load(NULL, &s_cfg, &s_reg);
    s_verbose = getenv("SC_FUZZ_VERBOSE") != NULL;
    return 0;
}

static void s_check(int rc, sc__envelope_t *env, const char *detail, const char *user,
                    const char *buf, size_t len)
{
    if (s_verbose)
        fprintf(stderr, "fuzz_envelope:%s %s %s %s\n", user ? " (as " S_USER ")" : "",
                sc__error_code(rc), env->ev.type ? env->ev.type : "-", detail);
    if (rc < SC__OK || rc >= SC__E_COUNT || rc == SC__E_UNAVAILABLE)
        fz_fail("envelope: returned %d", rc);
    if (env->id && !fz_utf8(env->id))
        fz_fail("envelope: id to echo is not valid UTF-8");
    if (rc != SC__OK) {
        if (!detail[0])
            fz_fail("envelope: refused (%s) without a detail", sc__error_code(rc));
        /* What the ingest thread sends (s_reply_error): the detail, made valid UTF-8. */
        char sent[512];
        snprintf(sent, sizeof sent, "%s", detail);
        sc_utf8_clean(sent);
        if (!fz_utf8(sent))
            fz_fail("envelope: detail is not valid UTF-8 even cleaned, so the refusal cannot be "
                    "sent: \"%s\"",
                    sent);
        if (!sent[0])
            fz_fail("envelope: the detail says nothing once cleaned: \"%s\"", detail);
        return;
    }
    const sc_event_t *ev = &env->ev;
    if (!env->type || !ev->type || !ev->source || !json_is_object(ev->data))
        fz_fail("envelope: accepted without type, source or data object");
    if (!ev->school && !ev->district)
        fz_fail("envelope: accepted %s with neither school nor district", ev->type);
    if (env->type->owner == SC__NO_OWNER || (env->type->flags & SC_TYPE_EMITTED))
        fz_fail("envelope: accepted %s, which only plugins raise", ev->type);
    if (env->source_filled && (!user || strcmp(ev->source, user) != 0))
        fz_fail("envelope: source filled in, but not with the connection's name");
    /* The ingest thread journals data as the frame's own text when it can, else serialised
     * again: either way it must read back as the value the validator saw. */
    if (sc__envelope_data_text(env, buf, len) < 0)
        fz_fail("envelope: accepted data cannot be serialised");
    json_t *back = json_loadb(env->data_text, env->data_len, 0, NULL);
    if (!back || !json_equal(back, ev->data))
        fz_fail("envelope: data as journaled (%.*s) is not the data accepted", (int)env->data_len,
                env->data_text);
    json_decref(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sc__envelope_t env;
    char detail[512]; /* the size the ingest thread uses */

    int plain = sc__envelope_parse(s_reg, &s_limits, (const char *)data, size, S_NOW, &env, detail,
                                   sizeof detail);
    s_check(plain, &env, detail, NULL, (const char *)data, size);
    if (env.source_filled)
        fz_fail("envelope: source filled in without an authenticated connection");
    sc__envelope_clear(&env);

    /* As read from a CURVE connection named S_USER: a missing source is that name. */
    int as = sc__envelope_parse_as(s_reg, &s_limits, (const char *)data, size, S_NOW, S_USER, &env,
                                   detail, sizeof detail);
    s_check(as, &env, detail, S_USER, (const char *)data, size);
    if (plain == SC__OK && (as != SC__OK || env.source_filled))
        fz_fail("envelope: accepted as sent, but %s from a connection (%s)", sc__error_code(as),
                env.source_filled ? "source filled in" : detail);
    sc__envelope_clear(&env);
    return 0;
}
