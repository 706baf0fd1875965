/* notify plugin: an outbox of requested notifications, delivered with retries, and their delivery
 * log. */
#include "notify.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_SUBJECT_MAX 1000
#define S_BODY_MAX 20000
#define S_URL_MAX 2000

/* ---- config -------------------------------------------------------------- */

static const struct sc_config_key s_config[] = {
    {"attempts", SC_CFG_INT, "6",
     "deliveries tried before notification.failed (with the default back-off the last is "
     "about 16 minutes after the first)"},
    {"retry_base", SC_CFG_DURATION, "\"30s\"",
     "wait after the first failed attempt; doubled after each further failure"},
    {"retry_max", SC_CFG_DURATION, "\"10m\"", "longest wait between two attempts"},
    {"batch", SC_CFG_INT, "50", "most deliveries tried in one tick (they run in parallel)"},
    {"route_batch", SC_CFG_INT, "10",
     "most deliveries to one destination server in one tick, so a dead server cannot fill a "
     "tick"},
    {"timeout", SC_CFG_DURATION, "\"10s\"", "longest one delivery may take, connecting included"},
    {"connect_timeout", SC_CFG_DURATION, "\"5s\"", "longest a connection may take to open"},
    {"secret", SC_CFG_STRING, "\"\"",
     "key of the X-Safecampus-Signature HMAC-SHA256 webhook header; empty: no signature"},
    {"webhook_url", SC_CFG_STRING, "\"\"",
     "webhook for people whose contacts name none; empty: such people have no webhook"},
    {"smtp_url", SC_CFG_STRING, "\"\"",
     "mail server, \"smtp://host:587\" or \"smtps://host:465\"; empty: no e-mail"},
    {"smtp_from", SC_CFG_STRING, "\"safecampus@localhost\"", "sender address of e-mail"},
    {"smtp_user", SC_CFG_STRING, "\"\"", "SMTP login; empty: none"},
    {"smtp_password", SC_CFG_STRING, "\"\"", "SMTP password"},
    {"smtp_tls", SC_CFG_STRING, "\"try\"",
     "STARTTLS on smtp://: none, try (when offered), required"},
    {"sms_url", SC_CFG_STRING, "\"\"",
     "SMS gateway URL template ({phone} {subject} {body} {notification} {person} {name} "
     "{school}, URL-escaped); empty: no SMS"},
    {"sms_body", SC_CFG_STRING, "\"\"",
     "SMS gateway body template (placeholders JSON-escaped, or form-escaped for a form "
     "content type); empty: a GET"},
    {"sms_content_type", SC_CFG_STRING, "\"application/json\"", "content type of the SMS body"},
    {"sms_headers", SC_CFG_LIST, "[]", "extra headers for the SMS gateway, \"Name: value\""},
    {"robots", SC_CFG_GROUP, "{}",
     "chat robots: name → {url, template, secret}; dingtalk and wecom are built in"},
    {NULL, 0, NULL, NULL},
};

/* The text message DingTalk and WeCom group robots both take. */
static const char s_robot_text[] =
    "{\"msgtype\":\"text\",\"text\":{\"content\":\"{subject}\\n{body}\"}}";

static bool s_is_url(const char *s)
{
    return s && (strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0);
}

static bool s_no_ctl(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
    return true;
}

/*
 * Where a URL goes: "scheme://host:port" into route (may be NULL). Returns
 * false when s is not an http(s) URL curl can parse.
 */
static bool s_url_route(const char *s, char *route, size_t len)
{
    if (!s_is_url(s) || strlen(s) > S_URL_MAX || !s_no_ctl(s) || strchr(s, ' '))
        return false;
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL;
    bool ok = u && curl_url_set(u, CURLUPART_URL, s, 0) == CURLUE_OK &&
              curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
              curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
              curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK;
    if (ok && route)
        snprintf(route, len, "%s://%s:%s", scheme, host, port);
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return ok;
}

/* A robot's settings merged over the built-in entry of the same name; logs and fails on a bad one.
 */
static int s_robot_add(sc_ctx_t *ctx, json_t *robots, const char *name, const json_t *given)
{
    static const char *const known[] = {"url", "template", "secret", NULL};
    char detail[256];
    char prefix[SC_CODE_MAX + 32];
    snprintf(prefix, sizeof prefix, "notify.robots.%s.", name);
    json_t *probe = json_pack("{s:s}", "name", name);
    int rc = sc_check_code(probe, "notify.robots.", "name", true, detail, sizeof detail);
    json_decref(probe);
    if (rc == 0 && (!strcmp(name, "webhook") || !strcmp(name, "email") || !strcmp(name, "sms")))
        rc = sc_fail(detail, sizeof detail, "notify.robots.%s: the name of a built-in channel",
                     name);
    if (rc == 0 && !json_is_object(given))
        rc = sc_fail(detail, sizeof detail, "notify.robots.%s: expected a group", name);
    if (rc == 0)
        rc = sc_check_known(given, prefix, known, detail, sizeof detail);
    for (size_t i = 0; rc == 0 && known[i]; i++)
        rc = sc_check_string(given, prefix, known[i], false, 4096, detail, sizeof detail);
    const char *url = sc_json_str(given, "url");
    if (rc == 0 && url && *url && !s_url_route(url, NULL, 0))
        rc = sc_fail(detail, sizeof detail, "%surl: must be an http or https URL", prefix);
    if (rc < 0) {
        SC_LOG_ERR(ctx, "%s", detail);
        return rc;
    }
    json_t *r = json_object_get(robots, name);
    if (!r) {
        r = json_pack("{s:s, s:s, s:s}", "url", "", "template", s_robot_text, "secret", "");
        json_object_set_new(robots, name, r);
    }
    json_object_update(r, (json_t *)given);

    /* The body must be JSON whatever the text: try it with awkward sample values. */
    json_t *sample = json_pack("{s:s, s:s, s:s}", "subject", "\"quoted\"\n{braces}", "body",
                               "\\ 中文", "name", "");
    char *text = notify__render(sc_json_str(r, "template"), sample, 'j');
    json_t *doc = text ? json_loads(text, 0, NULL) : NULL;
    json_decref(sample);
    free(text);
    if (!json_is_object(doc)) {
        json_decref(doc);
        SC_LOG_ERR(ctx, "%stemplate: must give a JSON object once filled in", prefix);
        return -EINVAL;
    }
    json_decref(doc);
    return 0;
}

static char *s_strdup_cfg(const json_t *cfg, const char *key)
{
    const char *v = sc_json_str(cfg, key);
    return strdup(v ? v : "");
}

/* Reads and checks the config section into st. Returns 0 or -EINVAL (logged) / -ENOMEM. */
static int s_configure(sc_ctx_t *ctx, notify_state_t *st)
{
    const json_t *cfg = sc_config(ctx);
    st->attempts = (int)sc_json_int(cfg, "attempts", 6);
    st->retry_base = sc_json_int(cfg, "retry_base", 30);
    st->retry_max = sc_json_int(cfg, "retry_max", 600);
    st->batch = (int)sc_json_int(cfg, "batch", 50);
    st->route_batch = (int)sc_json_int(cfg, "route_batch", 10);
    st->timeout_ms = (long)sc_json_int(cfg, "timeout", 10) * 1000;
    st->connect_timeout_ms = (long)sc_json_int(cfg, "connect_timeout", 5) * 1000;
    if (st->attempts < 1 || st->attempts > 100) {
        SC_LOG_ERR(ctx, "notify.attempts: must be from 1 to 100");
        return -EINVAL;
    }
    if (st->retry_base < 1 || st->retry_max < st->retry_base) {
        SC_LOG_ERR(ctx, "notify.retry_base: must be at least 1s and at most notify.retry_max");
        return -EINVAL;
    }
    if (st->batch < 1 || st->route_batch < 1) {
        SC_LOG_ERR(ctx, "notify.batch, notify.route_batch: must be at least 1");
        return -EINVAL;
    }
    if (st->timeout_ms < 1000 || st->connect_timeout_ms < 1000) {
        SC_LOG_ERR(ctx, "notify.timeout, notify.connect_timeout: must be at least 1s");
        return -EINVAL;
    }
    if (!(st->secret = s_strdup_cfg(cfg, "secret")) ||
        !(st->webhook_url = s_strdup_cfg(cfg, "webhook_url")) ||
        !(st->smtp_url = s_strdup_cfg(cfg, "smtp_url")) ||
        !(st->smtp_from = s_strdup_cfg(cfg, "smtp_from")) ||
        !(st->smtp_user = s_strdup_cfg(cfg, "smtp_user")) ||
        !(st->smtp_password = s_strdup_cfg(cfg, "smtp_password")) ||
        !(st->sms_url = s_strdup_cfg(cfg, "sms_url")) ||
        !(st->sms_body = s_strdup_cfg(cfg, "sms_body")) ||
        !(st->sms_content_type = s_strdup_cfg(cfg, "sms_content_type")))
        return -ENOMEM;
    if (st->webhook_url[0] && !s_url_route(st->webhook_url, NULL, 0)) {
        SC_LOG_ERR(ctx, "notify.webhook_url: must be an http or https URL");
        return -EINVAL;
    }
    if (st->smtp_url[0] && strncmp(st->smtp_url, "smtp://", 7) != 0 &&
        strncmp(st->smtp_url, "smtps://", 8) != 0) {
        SC_LOG_ERR(ctx, "notify.smtp_url: must start with smtp:// or smtps://");
        return -EINVAL;
    }
    const char *at = strchr(st->smtp_from, '@');
    if (!at || at == st->smtp_from || !at[1] || !s_no_ctl(st->smtp_from) ||
        strpbrk(st->smtp_from, " <>,;\"") || strlen(st->smtp_from) > 254) {
        SC_LOG_ERR(ctx, "notify.smtp_from: must be a plain e-mail address");
        return -EINVAL;
    }
    const char *tls = sc_json_str(cfg, "smtp_tls");
    st->smtp_tls = !strcmp(tls, "none")       ? (long)CURLUSESSL_NONE
                   : !strcmp(tls, "try")      ? (long)CURLUSESSL_TRY
                   : !strcmp(tls, "required") ? (long)CURLUSESSL_ALL
                                              : -1;
    if (st->smtp_tls < 0) {
        SC_LOG_ERR(ctx, "notify.smtp_tls: must be one of none, try, required");
        return -EINVAL;
    }
    if (st->sms_url[0] && !s_is_url(st->sms_url)) {
        SC_LOG_ERR(ctx, "notify.sms_url: must be an http or https URL template");
        return -EINVAL;
    }
    if (!s_no_ctl(st->sms_content_type)) {
        SC_LOG_ERR(ctx, "notify.sms_content_type: must not hold control characters");
        return -EINVAL;
    }
    st->sms_headers = json_incref(json_object_get(cfg, "sms_headers"));
    size_t i;
    const json_t *h;
    json_array_foreach(st->sms_headers, i, h)
    {
        const char *s = json_string_value(h);
        if (!s || !strchr(s, ':') || s[0] == ':' || !s_no_ctl(s) || strlen(s) > 400) {
            SC_LOG_ERR(ctx, "notify.sms_headers[%zu]: must be a \"Name: value\" string", i);
            return -EINVAL;
        }
    }

    /* The built-in robots first, then the configured ones over them. */
    int rc;
    const char *builtin[] = {"dingtalk", "wecom"};
    if (!(st->robots = json_object()))
        return -ENOMEM;
    for (size_t b = 0; b < 2; b++) {
        json_t *empty = json_object();
        rc = s_robot_add(ctx, st->robots, builtin[b], empty);
        json_decref(empty);
        if (rc < 0)
            return rc;
    }
    const char *name;
    const json_t *given;
    json_object_foreach((json_t *)json_object_get(cfg, "robots"), name, given)
    {
        if ((rc = s_robot_add(ctx, st->robots, name, given)) < 0)
            return rc;
    }
    return 0;
}

static void s_fini(sc_ctx_t *ctx, void *state)
{
    (void)ctx;
    notify_state_t *st = state;
    if (!st)
        return;
    if (st->multi) {
        curl_multi_cleanup(st->multi);
        curl_global_cleanup();
    }
    free(st->secret);
    free(st->webhook_url);
    free(st->smtp_url);
    free(st->smtp_from);
    free(st->smtp_user);
    free(st->smtp_password);
    free(st->sms_url);
    free(st->sms_body);
    free(st->sms_content_type);
    json_decref(st->sms_headers);
    json_decref(st->robots);
    free(st);
}

static int s_init(sc_ctx_t *ctx, void **state)
{
    notify_state_t *st = calloc(1, sizeof *st);
    if (!st)
        return -ENOMEM;
    *state = st;
    int rc = s_configure(ctx, st);
    if (rc < 0)
        return rc;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return -EIO;
    if (!(st->multi = curl_multi_init())) {
        curl_global_cleanup();
        return -ENOMEM;
    }
    return 0;
}

/* ---- events out ---------------------------------------------------------- */

/*
 * Raises notification.delivered (reason NULL) or notification.failed about one
 * notification. ref_json is the request's ref as JSON text or NULL.
 */
static int s_emit_outcome(sc_ctx_t *ctx, const char *school, const char *district,
                          const char *notification, const char *person, const char *channel,
                          int attempts, const char *reason, const char *detail,
                          const char *ref_json, sc_time_t at)
{
    const char *type = reason ? "notification.failed" : "notification.delivered";
    char id[SC_CODE_MAX + 16];
    snprintf(id, sizeof id, "%s:%s", reason ? "failed" : "delivered", notification);
    json_t *data = json_pack("{s:s, s:s, s:s, s:i}", "notification", notification, "person", person,
                             "channel", channel, "attempts", attempts);
    if (!data)
        return -ENOMEM;
    if (reason) {
        json_object_set_new(data, "reason", json_string(reason));
        if (detail && *detail)
            json_object_set_new(data, "detail", json_string(detail));
    }
    json_t *ref = ref_json ? json_loads(ref_json, JSON_DECODE_ANY, NULL) : NULL;
    if (ref)
        json_object_set_new(data, "ref", ref);
    int rc = sc_emit(ctx, &(sc_emit_t){.type = type,
                                       .school = school,
                                       .district = school ? NULL : district,
                                       .id = id,
                                       .occurred_at = at,
                                       .data = data});
    json_decref(data);
    return rc;
}

/* ---- handle: notification.requested → the outbox ------------------------- */

/* What a request resolves to: where it goes, or why it cannot go anywhere. */
struct s_target {
    const char *address; /* borrowed from the person or the config */
    char route[600];
    const char *reason; /* NULL when deliverable */
    char detail[512];
};

static bool s_is_email(const char *s)
{
    const char *at = s ? strchr(s, '@') : NULL;
    return at && at != s && at[1] && !strchr(at + 1, '@') && strlen(s) <= 254 && s_no_ctl(s) &&
           !strpbrk(s, " <>,;\"()[]\\");
}

static bool s_is_phone(const char *s)
{
    size_t digits = 0;
    if (!s || !*s || strlen(s) > 32 || strspn(s, "+0123456789- ()") != strlen(s))
        return false;
    for (; *s; s++)
        digits += *s >= '0' && *s <= '9';
    return digits >= 3;
}

static void s_channels(const notify_state_t *st, char *buf, size_t len)
{
    size_t off = (size_t)snprintf(buf, len, "webhook, email, sms");
    const char *name;
    const json_t *r;
    json_object_foreach(st->robots, name, r)
    {
        if (off < len)
            off += (size_t)snprintf(buf + off, len - off, ", %s", name);
    }
}

/* Finds where a notification for `person` over `channel` goes (person: borrowed, may be NULL). */
static void s_resolve(const notify_state_t *st, const char *code, const json_t *person,
                      const char *channel, struct s_target *t)
{
    enum notify_kind kind = notify__kind(st, channel);
    const json_t *contacts = json_object_get(person, "contacts");
    const char *mine = sc_json_str(contacts, kind == NOTIFY_ROBOT   ? channel
                                             : kind == NOTIFY_EMAIL ? "email"
                                             : kind == NOTIFY_SMS   ? "phone"
                                                                    : "webhook");
    memset(t, 0, sizeof *t);
    if (!kind) {
        char list[400];
        s_channels(st, list, sizeof list);
        t->reason = "unknown channel";
        snprintf(t->detail, sizeof t->detail, "data.channel: must be one of %s", list);
        return;
    }
    if ((kind == NOTIFY_EMAIL && !st->smtp_url[0]) || (kind == NOTIFY_SMS && !st->sms_url[0])) {
        t->reason = "channel not configured";
        snprintf(t->detail, sizeof t->detail, "notify.%s is not set",
                 kind == NOTIFY_EMAIL ? "smtp_url" : "sms_url");
        return;
    }
    if (!person) {
        t->reason = "no usable contact";
        snprintf(t->detail, sizeof t->detail, "person %s is not in the directory", code);
        return;
    }
    switch (kind) {
    case NOTIFY_EMAIL:
        if (s_is_email(mine)) {
            t->address = mine;
            snprintf(t->route, sizeof t->route, "email");
        }
        break;
    case NOTIFY_SMS:
        if (s_is_phone(mine)) {
            t->address = mine;
            snprintf(t->route, sizeof t->route, "sms");
        }
        break;
    case NOTIFY_WEBHOOK:
    case NOTIFY_ROBOT: {
        const char *fallback = kind == NOTIFY_WEBHOOK
                                   ? st->webhook_url
                                   : sc_json_str(notify__robot(st, channel), "url");
        if (s_url_route(mine, t->route, sizeof t->route))
            t->address = mine;
        else if (fallback && *fallback && s_url_route(fallback, t->route, sizeof t->route))
            t->address = fallback;
        break;
    }
    }
    if (!t->address) {
        t->reason = "no usable contact";
        snprintf(t->detail, sizeof t->detail, "person %s has no usable %s contact", code,
                 kind == NOTIFY_EMAIL ? "e-mail"
                 : kind == NOTIFY_SMS ? "phone"
                                      : channel);
    }
}

/* The date of `at` in the school's time zone is worked out by PostgreSQL from this name. */
static char *s_timezone(sc_ctx_t *ctx, const char *school)
{
    json_t *s = school ? ctx->host->school(ctx, school) : NULL;
    const char *tz = sc_json_str(s, "timezone");
    char *out = strdup(tz ? tz : ctx->host->default_timezone(ctx));
    json_decref(s);
    return out;
}

/*
 * Puts a request in the outbox, due now — or, when it cannot be delivered at
 * all, records it as failed and raises notification.failed at once. A code
 * already in the outbox is a no-op. No network I/O here: that is tick's.
 */
static int s_request(sc_ctx_t *ctx, notify_state_t *st, const sc_event_t *ev)
{
    const json_t *d = ev->data;
    char detail[300] = "";
    if (sc_check_code(d, "data.", "notification", true, detail, sizeof detail) < 0 ||
        sc_check_code(d, "data.", "person", true, detail, sizeof detail) < 0 ||
        sc_check_code(d, "data.", "channel", true, detail, sizeof detail) < 0) {
        /* Nobody to report to: the emitter's validator should have refused it. */
        SC_LOG_WARN(ctx, "event %lld: notification.requested ignored: %s", (long long)ev->id,
                    detail);
        return 0;
    }
    const char *code = sc_json_str(d, "notification");
    const char *person_code = sc_json_str(d, "person");
    const char *channel = sc_json_str(d, "channel");
    const char *subject = sc_json_str(d, "subject") ? sc_json_str(d, "subject") : "";
    const char *body = sc_json_str(d, "body") ? sc_json_str(d, "body") : "";
    json_t *person = ctx->host->person(ctx, person_code);
    char *ref = NULL, *tz = NULL;
    PGresult *res = NULL;
    int rc = -ENOMEM;
    struct s_target t;

    if (sc_check_string(d, "data.", "subject", false, S_SUBJECT_MAX, detail, sizeof detail) < 0 ||
        sc_check_string(d, "data.", "body", false, S_BODY_MAX, detail, sizeof detail) < 0 ||
        (!*subject && !*body &&
         sc_fail(detail, sizeof detail, "data.body: required when there is no subject") < 0)) {
        memset(&t, 0, sizeof t);
        t.reason = "invalid request";
        snprintf(t.detail, sizeof t.detail, "%s", detail);
    } else {
        s_resolve(st, person_code, person, channel, &t);
    }
    const json_t *jref = json_object_get(d, "ref");
    if (jref && !(ref = json_dumps(jref, JSON_ENCODE_ANY | JSON_COMPACT)))
        goto out;
    if (!(tz = s_timezone(ctx, ev->school)))
        goto out;

    char event[24], requested[SC_TIME_LEN], now[SC_TIME_LEN];
    snprintf(event, sizeof event, "%lld", (long long)ev->id);
    sc_time_format(ev->occurred_at, requested);
    sc_time_format(sc_now(ctx), now);
    const char *params[] = {code,
                            ev->school,
                            ev->district,
                            person_code,
                            sc_json_str(person, "name"),
                            channel,
                            t.address,
                            t.address ? t.route : NULL,
                            subject,
                            body,
                            ref,
                            ev->id ? event : NULL,
                            requested,
                            tz,
                            t.reason ? "failed" : "pending",
                            now,
                            t.reason,
                            t.reason ? t.detail : NULL};
    res = sc_pq_exec(sc_db(ctx),
                     "INSERT INTO notify.outbox (notification, school, district, person, name,"
                     " channel, address, route, subject, body, ref, event, requested_at,"
                     " requested_on, status, next_attempt_at, finished_at, reason, last_error)"
                     " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12::bigint,"
                     " $13::timestamptz, ($13::timestamptz AT TIME ZONE $14)::date, $15,"
                     " CASE WHEN $15 = 'pending' THEN $16::timestamptz END,"
                     " CASE WHEN $15 = 'failed' THEN $16::timestamptz END, $17, $18)"
                     " ON CONFLICT (notification) DO NOTHING RETURNING id",
                     18, params, &rc);
    if (!res)
        goto out;
    if (PQntuples(res) == 0) {
        SC_LOG_INFO(ctx, "notification %s: requested again, already in the outbox", code);
    } else if (t.reason) {
        SC_LOG_WARN(ctx, "notification %s to %s over %s: %s (%s)", code, person_code, channel,
                    t.reason, t.detail);
        rc = s_emit_outcome(ctx, ev->school, ev->district, code, person_code, channel, 0, t.reason,
                            t.detail, ref, 0);
    }
out:
    PQclear(res);
    json_decref(person);
    free(ref);
    free(tz);
    return rc;
}

static int s_handle(sc_ctx_t *ctx, void *state, const sc_event_t *ev)
{
    if (strcmp(ev->type, "notification.requested") != 0)
        return 0; /* our own delivered/failed, when subscribed by a wider prefix */
    return s_request(ctx, state, ev);
}

/* ---- tick: deliver what is due ------------------------------------------- */

/* Seconds to wait after attempt n failed: retry_base doubled n-1 times, at most retry_max. */
static int64_t s_backoff(const notify_state_t *st, int n)
{
    int64_t d = st->retry_base;
    for (int i = 1; i < n && d < st->retry_max; i++)
        d *= 2;
    return d < st->retry_max ? d : st->retry_max;
}

/*
 * Records one attempt in the delivery log and moves the outbox row on:
 * delivered, failed for good, or due again after the back-off. Raises
 * notification.delivered / notification.failed when the row is finished.
 */
static int s_record(sc_ctx_t *ctx, notify_state_t *st, const notify_job_t *job,
                    const char *district, sc_time_t now)
{
    char attempt[16], at[SC_TIME_LEN], next[SC_TIME_LEN], code[16], ms[24];
    bool last = !job->ok && (job->permanent || job->attempt >= st->attempts);
    const char *status = job->ok ? "delivered" : last ? "failed" : "pending";
    /* A permanent failure with a reply code was the receiver's refusal; without one, ours. */
    const char *reason = job->ok                       ? NULL
                         : job->permanent && job->code ? "refused by receiver"
                         : job->permanent              ? "cannot be delivered"
                                                       : "gave up after retries";
    snprintf(attempt, sizeof attempt, "%d", job->attempt);
    snprintf(code, sizeof code, "%ld", job->code);
    snprintf(ms, sizeof ms, "%lld", (long long)(job->duration_us / 1000));
    sc_time_format(now, at);
    sc_time_format(now + s_backoff(st, job->attempt) * SC_USEC_PER_SEC, next);
    const char *error = job->ok ? NULL : job->error;
    int rc;

    const char *log[] = {job->notification,       attempt, at, job->address, job->ok ? "t" : "f",
                         job->code ? code : NULL, error,   ms};
    PGresult *res = sc_pq_exec(sc_db(ctx),
                               "INSERT INTO notify.attempts (notification, attempt, at, address,"
                               " ok, status, error, duration_ms)"
                               " VALUES ($1, $2::int, $3::timestamptz, $4, $5::boolean, $6::int,"
                               " $7, $8::int)",
                               8, log, &rc);
    PQclear(res);
    if (!res)
        return rc;
    const char *upd[] = {job->notification,    status, attempt, job->ok || last ? NULL : next, at,
                         last ? reason : NULL, error};
    res = sc_pq_exec(sc_db(ctx),
                     "UPDATE notify.outbox SET status = $2, attempts = $3::int,"
                     " next_attempt_at = $4::timestamptz,"
                     " finished_at = CASE WHEN $2 <> 'pending' THEN $5::timestamptz END,"
                     " reason = $6, last_error = $7 WHERE notification = $1",
                     7, upd, &rc);
    PQclear(res);
    if (!res)
        return rc;

    if (job->ok) {
        SC_LOG_INFO(ctx, "notification %s delivered over %s (attempt %d)", job->notification,
                    job->channel, job->attempt);
        return s_emit_outcome(ctx, job->school, district, job->notification, job->person,
                              job->channel, job->attempt, NULL, NULL, job->ref_json, now);
    }
    if (!last) {
        SC_LOG_INFO(ctx, "notification %s over %s: attempt %d failed: %s; again at %s",
                    job->notification, job->channel, job->attempt, job->error, next);
        return 0;
    }
    SC_LOG_WARN(ctx, "notification %s over %s: %s after %d attempts: %s", job->notification,
                job->channel, reason, job->attempt, job->error);
    return s_emit_outcome(ctx, job->school, district, job->notification, job->person, job->channel,
                          job->attempt, reason, job->error, job->ref_json, now);
}

/* The earliest instant a pending row is due; now when something is due already. */
static int s_next_due(sc_ctx_t *ctx, sc_time_t now, sc_time_t *next)
{
    int rc;
    PGresult *res = sc_pq_exec(sc_db(ctx),
                               "SELECT min(next_attempt_at) FROM notify.outbox"
                               " WHERE status = 'pending'",
                               0, NULL, &rc);
    if (!res)
        return rc;
    sc_time_t t = sc_pq_time(res, 0, 0, SC_TIME_NEVER);
    PQclear(res);
    *next = t < now ? now : t;
    return 0;
}

/*
 * Delivers the rows due at `now`: at most `batch`, at most `route_batch` per
 * destination server, oldest first, locked so that a second daemon skips them.
 * The transfers run in parallel, each bounded by the timeout; the tick's
 * transaction commits the attempts and the events together. A crash after a
 * receiver accepted and before the commit sends that notification again on
 * the next tick, with the same idempotency key: receivers dedupe on it.
 */
static int s_tick(sc_ctx_t *ctx, void *state, sc_time_t now, sc_time_t *next)
{
    notify_state_t *st = state;
    char when[SC_TIME_LEN], batch[16], route_batch[16];
    snprintf(batch, sizeof batch, "%d", st->batch);
    snprintf(route_batch, sizeof route_batch, "%d", st->route_batch);
    const char *params[] = {sc_time_format(now, when), route_batch, batch};
    notify_job_t *jobs = NULL;
    int rc;
    PGresult *res = sc_pq_exec(
        sc_db(ctx),
        "SELECT o.notification, o.school, o.district, o.person, o.name, o.channel, o.address,"
        " o.subject, o.body, o.ref::text, o.attempts"
        " FROM notify.outbox o"
        " WHERE o.status = 'pending' AND o.next_attempt_at <= $1::timestamptz AND o.id IN ("
        "   SELECT id FROM ("
        "     SELECT id, next_attempt_at, row_number() OVER"
        "       (PARTITION BY route ORDER BY next_attempt_at, id) AS n"
        "     FROM notify.outbox"
        "     WHERE status = 'pending' AND next_attempt_at <= $1::timestamptz) due"
        "   WHERE n <= $2::int ORDER BY next_attempt_at, id LIMIT $3::int)"
        " ORDER BY o.next_attempt_at, o.id"
        " FOR UPDATE OF o SKIP LOCKED",
        3, params, &rc);
    if (!res)
        goto out;
    int n = PQntuples(res);
    rc = -ENOMEM;
    if (n > 0 && !(jobs = calloc((size_t)n, sizeof *jobs)))
        goto out;
    for (int i = 0; i < n; i++) {
        notify_job_t *j = &jobs[i];
#define S_COL(c) (PQgetisnull(res, i, (c)) ? NULL : PQgetvalue(res, i, (c)))
        j->notification = S_COL(0);
        j->school = S_COL(1);
        j->person = S_COL(3);
        j->name = S_COL(4);
        j->channel = S_COL(5);
        j->address = S_COL(6);
        j->subject = S_COL(7);
        j->body = S_COL(8);
        j->ref_json = S_COL(9);
#undef S_COL
        j->attempt = atoi(PQgetvalue(res, i, 10)) + 1;
        j->now = now;
    }
    if (n > 0 && (rc = notify__deliver(ctx, st, jobs, (size_t)n)) < 0)
        goto out;
    for (int i = 0; i < n; i++) {
        const char *district = PQgetisnull(res, i, 2) ? NULL : PQgetvalue(res, i, 2);
        if ((rc = s_record(ctx, st, &jobs[i], district, now)) < 0)
            goto out;
    }
    rc = s_next_due(ctx, now, next);
out:
    free(jobs);
    PQclear(res);
    return rc;
}

/* ---- query --------------------------------------------------------------- */

static int s_bad(json_t **reply, const char *detail)
{
    *reply = json_pack("{s:s}", "error", detail);
    return -EINVAL;
}

/* The rows of res as a new object under `key`, plus "next": the last id when there are more. */
static json_t *s_page(PGresult *res, int limit, const char *key)
{
    json_t *rows = sc_pq_rows(res);
    json_t *next = json_null();
    if (json_array_size(rows) > (size_t)limit) {
        json_array_remove(rows, (size_t)limit);
        next = json_sprintf(
            "%lld", (long long)sc_json_int(json_array_get(rows, (size_t)limit - 1), "id", 0));
    }
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) json_object_del(row, "id");
    return json_pack("{s:o, s:o}", key, rows, "next", next);
}

/* Paging members {after, limit}: after is the opaque cursor a previous reply gave as "next". */
static int s_paging(const json_t *req, char *after, size_t alen, int *limit, char *detail,
                    size_t dlen)
{
    if (sc_check_string(req, "", "after", false, 20, detail, dlen) < 0 ||
        sc_check_int(req, "", "limit", false, 1, 1000, detail, dlen) < 0)
        return -EINVAL;
    const char *a = sc_json_str(req, "after");
    if (a && (!*a || strspn(a, "0123456789") != strlen(a)))
        return sc_fail(detail, dlen, "after: must be a cursor from a previous reply");
    snprintf(after, alen, "%s", a ? a : "0");
    *limit = (int)sc_json_int(req, "limit", 100);
    return 0;
}

#define S_ROW_TIMES                                                                                \
    " to_json(requested_at) AS requested_at, to_json(next_attempt_at) AS next_attempt_at,"         \
    " to_json(finished_at) AS finished_at"

/* what:"log" {notification} → the outbox row and every attempt. */
static int s_query_log(sc_ctx_t *ctx, const json_t *req, json_t **reply)
{
    char detail[200];
    int rc;
    if (sc_check_code(req, "", "notification", true, detail, sizeof detail) < 0)
        return s_bad(reply, detail);
    const char *params[] = {sc_json_str(req, "notification")};
    PGresult *one =
        sc_pq_exec(sc_db(ctx),
                   "SELECT notification, school, district, person, name, channel,"
                   " address, subject, body, ref, status, attempts, reason,"
                   " last_error," S_ROW_TIMES " FROM notify.outbox WHERE notification = $1",
                   1, params, &rc);
    PGresult *all = one ? sc_pq_exec(sc_db(ctx),
                                     "SELECT attempt, to_json(at) AS at, address, ok, status,"
                                     " error, duration_ms FROM notify.attempts"
                                     " WHERE notification = $1 ORDER BY attempt",
                                     1, params, &rc)
                        : NULL;
    if (all) {
        json_t *rows = sc_pq_rows(one);
        json_t *row = json_array_get(rows, 0);
        *reply = json_pack("{s:O, s:o}", "notification", row ? row : json_null(), "attempts",
                           sc_pq_rows(all));
        json_decref(rows);
        rc = *reply ? 0 : -ENOMEM;
    }
    PQclear(one);
    PQclear(all);
    return rc;
}

/* what:"outbox" {status, channel, school, person, after, limit} → rows and counts per channel. */
static int s_query_outbox(sc_ctx_t *ctx, const json_t *req, json_t **reply)
{
    static const char *const statuses[] = {"pending", "delivered", "failed", NULL};
    char detail[200], after[24], limit_s[16];
    int limit, rc;
    if (sc_check_enum(req, "", "status", false, statuses, detail, sizeof detail) < 0 ||
        sc_check_code(req, "", "channel", false, detail, sizeof detail) < 0 ||
        sc_check_code(req, "", "school", false, detail, sizeof detail) < 0 ||
        sc_check_code(req, "", "person", false, detail, sizeof detail) < 0 ||
        s_paging(req, after, sizeof after, &limit, detail, sizeof detail) < 0)
        return s_bad(reply, detail);
    snprintf(limit_s, sizeof limit_s, "%d", limit + 1);
    const char *params[] = {sc_json_str(req, "status"),
                            sc_json_str(req, "channel"),
                            sc_json_str(req, "school"),
                            sc_json_str(req, "person"),
                            after,
                            limit_s};
    PGresult *rows = sc_pq_exec(
        sc_db(ctx),
        "SELECT id, notification, school, person, channel, address, subject, status, attempts,"
        " reason, last_error," S_ROW_TIMES " FROM notify.outbox"
        " WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR channel = $2)"
        " AND ($3::text IS NULL OR school = $3) AND ($4::text IS NULL OR person = $4)"
        " AND id > $5::bigint ORDER BY id LIMIT $6::int",
        6, params, &rc);
    PGresult *counts = rows ? sc_pq_exec(sc_db(ctx),
                                         "SELECT channel, status, count(*) FROM notify.outbox"
                                         " WHERE ($1::text IS NULL OR school = $1)"
                                         " GROUP BY channel, status ORDER BY channel, status",
                                         1, &params[2], &rc)
                            : NULL;
    if (counts) {
        json_t *by = json_object();
        for (int i = 0; i < PQntuples(counts); i++) {
            const char *ch = PQgetvalue(counts, i, 0);
            json_t *c = json_object_get(by, ch);
            if (!c) {
                c = json_pack("{s:i, s:i, s:i}", "pending", 0, "delivered", 0, "failed", 0);
                json_object_set_new(by, ch, c);
            }
            json_object_set_new(c, PQgetvalue(counts, i, 1),
                                json_integer(strtoll(PQgetvalue(counts, i, 2), NULL, 10)));
        }
        *reply = s_page(rows, limit, "notifications");
        json_object_set_new(*reply, "counts", by);
        rc = 0;
    }
    PQclear(rows);
    PQclear(counts);
    return rc;
}

/* Checks {school or district, from, to}: dates of the local calendar, from ≤ to. */
static int s_period(const json_t *req, bool district_ok, char *detail, size_t dlen)
{
    int64_t from, to;
    if (sc_check_code(req, "", "school", !district_ok, detail, dlen) < 0 ||
        (district_ok && sc_check_code(req, "", "district", false, detail, dlen) < 0) ||
        sc_check_date(req, "", "from", true, detail, dlen) < 0 ||
        sc_check_date(req, "", "to", true, detail, dlen) < 0)
        return -EINVAL;
    if (district_ok && !sc_json_str(req, "school") == !sc_json_str(req, "district"))
        return sc_fail(detail, dlen, "school: give either school or district");
    sc_date_parse(sc_json_str(req, "from"), &from);
    sc_date_parse(sc_json_str(req, "to"), &to);
    if (from > to)
        return sc_fail(detail, dlen, "to: must not be before from");
    return 0;
}

/* what:"ledger" {school, from, to, after, limit} → the delivery log section of the school's ledger.
 */
static int s_query_ledger(sc_ctx_t *ctx, const json_t *req, json_t **reply)
{
    char detail[200], after[24], limit_s[16];
    int limit, rc;
    if (s_period(req, false, detail, sizeof detail) < 0 ||
        s_paging(req, after, sizeof after, &limit, detail, sizeof detail) < 0)
        return s_bad(reply, detail);
    snprintf(limit_s, sizeof limit_s, "%d", limit + 1);
    const char *params[] = {sc_json_str(req, "school"), sc_json_str(req, "from"),
                            sc_json_str(req, "to"), after, limit_s};
    PGresult *res = sc_pq_exec(
        sc_db(ctx),
        "SELECT id, json_build_array(notification, to_json(requested_at), channel, person,"
        " subject, status, attempts, to_json(finished_at), coalesce(reason, last_error)) AS row"
        " FROM notify.outbox WHERE school = $1 AND requested_on BETWEEN $2::date AND $3::date"
        " AND id > $4::bigint ORDER BY id LIMIT $5::int",
        5, params, &rc);
    if (!res)
        return rc;
    json_t *page = s_page(res, limit, "rows");
    PQclear(res);
    json_t *rows = json_array();
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(page, "rows"), i, r)
        json_array_append(rows, json_object_get(r, "row"));
    *reply = json_pack("{s:[{s:s, s:s, s:s, s:[s,s,s,s,s,s,s,s,s], s:o}], s:O}", "sections", "key",
                       "notifications", "title_zh", "通知送达记录", "title_en",
                       "Notification deliveries", "columns", "notification", "requested_at",
                       "channel", "person", "subject", "status", "attempts", "finished_at",
                       "reason", "rows", rows, "next", json_object_get(page, "next"));
    json_decref(page);
    return *reply ? 0 : -ENOMEM;
}

/* what:"figures" {school or district, from, to} → counts for the year-end assessment. */
static int s_query_figures(sc_ctx_t *ctx, const json_t *req, json_t **reply)
{
    char detail[200];
    int rc;
    if (s_period(req, true, detail, sizeof detail) < 0)
        return s_bad(reply, detail);
    const char *params[] = {sc_json_str(req, "school"), sc_json_str(req, "district"),
                            sc_json_str(req, "from"), sc_json_str(req, "to")};
    PGresult *res =
        sc_pq_exec(sc_db(ctx),
                   "SELECT count(*) AS notifications,"
                   " count(*) FILTER (WHERE status = 'delivered') AS delivered,"
                   " count(*) FILTER (WHERE status = 'delivered' AND attempts = 1)"
                   "   AS delivered_first_attempt,"
                   " count(*) FILTER (WHERE status = 'failed') AS failed,"
                   " count(*) FILTER (WHERE reason = 'no usable contact') AS no_contact,"
                   " count(*) FILTER (WHERE status = 'pending') AS pending"
                   " FROM notify.outbox WHERE (school = $1 OR district = $2)"
                   " AND requested_on BETWEEN $3::date AND $4::date",
                   4, params, &rc);
    if (!res)
        return rc;
    json_t *rows = sc_pq_rows(res);
    PQclear(res);
    *reply = json_incref(json_array_get(rows, 0));
    json_decref(rows);
    return *reply ? 0 : -ENOMEM;
}

static int s_query(sc_ctx_t *ctx, void *state, const json_t *req, json_t **reply)
{
    (void)state;
    const char *what = sc_json_str(req, "what");
    if (what && strcmp(what, "log") == 0)
        return s_query_log(ctx, req, reply);
    if (what && strcmp(what, "outbox") == 0)
        return s_query_outbox(ctx, req, reply);
    if (what && strcmp(what, "ledger") == 0)
        return s_query_ledger(ctx, req, reply);
    if (what && strcmp(what, "figures") == 0)
        return s_query_figures(ctx, req, reply);
    return s_bad(reply, "what: must be one of log, outbox, ledger, figures");
}

/* ---- validators of the types notify raises ------------------------------- */

static int s_check_common(const sc_event_t *ev, char *detail, size_t dlen)
{
    const json_t *d = ev->data;
    if (sc_check_code(d, "data.", "notification", true, detail, dlen) < 0 ||
        sc_check_code(d, "data.", "person", true, detail, dlen) < 0 ||
        sc_check_code(d, "data.", "channel", true, detail, dlen) < 0)
        return -EINVAL;
    return 0;
}

static int s_validate_delivered(const sc_event_t *ev, char *detail, size_t dlen)
{
    if (s_check_common(ev, detail, dlen) < 0 ||
        sc_check_int(ev->data, "data.", "attempts", true, 1, 1000, detail, dlen) < 0)
        return -EINVAL;
    return 0;
}

static int s_validate_failed(const sc_event_t *ev, char *detail, size_t dlen)
{
    if (s_check_common(ev, detail, dlen) < 0 ||
        sc_check_string(ev->data, "data.", "reason", true, 200, detail, dlen) < 0 ||
        sc_check_int(ev->data, "data.", "attempts", true, 0, 1000, detail, dlen) < 0 ||
        sc_check_string(ev->data, "data.", "detail", false, 1000, detail, dlen) < 0)
        return -EINVAL;
    return 0;
}

static const char *const s_subscribe[] = {"notification.requested", NULL};

static const struct sc_type s_types[] = {
    {"notification.delivered", SC_TYPE_EMITTED | SC_TYPE_DISTRICT, s_validate_delivered},
    {"notification.failed", SC_TYPE_EMITTED | SC_TYPE_DISTRICT, s_validate_failed},
    {NULL, 0, NULL},
};

extern const struct sc_migration notify_migrations[];

static const struct sc_plugin s_plugin = {
    .abi = SC_PLUGIN_ABI,
    .size = sizeof(struct sc_plugin),
    .name = "notify",
    .version = "1.0.0",
    .description = "delivers notification.requested by webhook, e-mail, SMS gateway and chat "
                   "robot, with retries and a delivery log",
    .subscribe = s_subscribe,
    .types = s_types,
    .config = s_config,
    .migrations = notify_migrations,
    .init = s_init,
    .handle = s_handle,
    .tick = s_tick,
    .query = s_query,
    .fini = s_fini,
};

SC_PLUGIN_DEFINE(s_plugin)
