/* notify: the deliveries themselves — webhook, e-mail, SMS gateway, chat robot — run in parallel
 * with curl multi. */
#include "notify.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S_RESPONSE_MAX 4096 /* bytes of a reply kept for robot error codes and the log */
#define S_USER_AGENT "safecampus-notify/1.0"

/* One transfer in flight: the job it serves and everything curl borrows until it ends. */
struct s_xfer {
    notify_job_t *job;
    enum notify_kind kind;
    CURL *easy;
    bool added;
    bool done;
    CURLcode result;
    struct curl_slist *headers;
    struct curl_slist *rcpt;
    char *url;
    char *payload;
    size_t payload_len;
    size_t payload_pos;
    char resp[S_RESPONSE_MAX + 1];
    size_t resp_len;
    char errbuf[CURL_ERROR_SIZE];
};

enum notify_kind notify__kind(const notify_state_t *st, const char *channel)
{
    if (!channel)
        return 0;
    if (strcmp(channel, "webhook") == 0)
        return NOTIFY_WEBHOOK;
    if (strcmp(channel, "email") == 0)
        return NOTIFY_EMAIL;
    if (strcmp(channel, "sms") == 0)
        return NOTIFY_SMS;
    return notify__robot(st, channel) ? NOTIFY_ROBOT : 0;
}

const json_t *notify__robot(const notify_state_t *st, const char *channel)
{
    const json_t *r = json_object_get(st->robots, channel);
    return json_is_object(r) ? r : NULL;
}

/* ---- small encoders ------------------------------------------------------ */

static int s_hmac(const char *key, const void *data, size_t len, unsigned char out[32])
{
    unsigned int n = 0;
    if (!HMAC(EVP_sha256(), key, (int)strlen(key), data, len, out, &n) || n != 32)
        return -EIO;
    return 0;
}

int notify__hmac_hex(const char *key, const void *data, size_t len, char *hex)
{
    unsigned char mac[32];
    if (s_hmac(key, data, len, mac) < 0)
        return -EIO;
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", mac[i]);
    return 0;
}

/* Base64 of data as a new string, or NULL. */
static char *s_base64(const void *data, size_t len)
{
    char *out = malloc(4 * ((len + 2) / 3) + 1);
    if (out)
        EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    return out;
}

/* Appends value to f escaped as the inside of a JSON string. Returns 0 or -EINVAL (not UTF-8). */
static int s_put_json(FILE *f, const char *value)
{
    json_t *s = json_string(value);
    char *text = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
    json_decref(s);
    if (!text)
        return -EINVAL;
    size_t n = strlen(text);
    fwrite(text + 1, 1, n - 2, f); /* without the quotes */
    free(text);
    return 0;
}

static int s_put_url(FILE *f, const char *value)
{
    char *e = curl_easy_escape(NULL, value, 0);
    if (!e)
        return -ENOMEM;
    fputs(e, f);
    curl_free(e);
    return 0;
}

char *notify__render(const char *tmpl, const json_t *vars, char escape)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    if (!f)
        return NULL;
    int rc = 0;
    for (const char *p = tmpl; *p && rc == 0; p++) {
        size_t n = 0;
        if (*p == '{')
            n = strspn(p + 1, "abcdefghijklmnopqrstuvwxyz_");
        const json_t *v = NULL;
        if (n > 0 && n < 32 && p[n + 1] == '}') {
            char name[32];
            memcpy(name, p + 1, n);
            name[n] = '\0';
            v = json_object_get(vars, name);
        }
        if (!json_is_string(v)) {
            fputc(*p, f);
            continue;
        }
        const char *value = json_string_value(v);
        rc = escape == 'j'                    ? s_put_json(f, value)
             : escape == 'u' || escape == 'f' ? s_put_url(f, value)
                                              : (fputs(value, f), 0);
        p += n + 1;
    }
    if (fclose(f) != 0 || rc < 0) {
        free(out);
        return NULL;
    }
    return out;
}

/* The placeholders templates may use, as a new object. */
static json_t *s_vars(const notify_job_t *job)
{
    json_t *v = json_object();
    const char *keys[] = {"notification", "person", "name", "school", "subject", "body", "phone"};
    const char *vals[] = {job->notification, job->person, job->name,   job->school,
                          job->subject,      job->body,   job->address};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        json_object_set_new(v, keys[i], json_string(vals[i] ? vals[i] : ""));
    return v;
}

/* ---- curl callbacks ------------------------------------------------------ */

static size_t s_on_write(char *data, size_t size, size_t nmemb, void *arg)
{
    struct s_xfer *x = arg;
    size_t n = size * nmemb, room = S_RESPONSE_MAX - x->resp_len;
    memcpy(x->resp + x->resp_len, data, n < room ? n : room);
    x->resp_len += n < room ? n : room;
    x->resp[x->resp_len] = '\0';
    return n; /* the rest is dropped, not an error */
}

static size_t s_on_read(char *buf, size_t size, size_t nmemb, void *arg)
{
    struct s_xfer *x = arg;
    size_t n = size * nmemb, left = x->payload_len - x->payload_pos;
    if (n > left)
        n = left;
    memcpy(buf, x->payload + x->payload_pos, n);
    x->payload_pos += n;
    return n;
}

__attribute__((format(printf, 2, 3))) static int s_header(struct curl_slist **list, const char *fmt,
                                                          ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    struct curl_slist *l = curl_slist_append(*list, line);
    if (!l)
        return -ENOMEM;
    *list = l;
    return 0;
}

/* Headers every HTTP delivery carries: the idempotency key under both names. */
static int s_common_headers(struct s_xfer *x, const char *content_type)
{
    const notify_job_t *job = x->job;
    int rc = 0;
    if (content_type && *content_type)
        rc |= s_header(&x->headers, "Content-Type: %s", content_type);
    rc |= s_header(&x->headers, "X-Safecampus-Notification: %s", job->notification);
    rc |= s_header(&x->headers, "Idempotency-Key: %s", job->notification);
    rc |= s_header(&x->headers, "X-Safecampus-Attempt: %d", job->attempt);
    rc |= s_header(&x->headers, "Expect:"); /* no 100-continue round trip */
    return rc ? -ENOMEM : 0;
}

/* ---- one setup per kind -------------------------------------------------- */

/* The webhook body: {notification, person, subject, body, ref, school, sent_at}, signed. */
static int s_setup_webhook(notify_state_t *st, struct s_xfer *x)
{
    const notify_job_t *job = x->job;
    char when[SC_TIME_LEN];
    json_t *ref = job->ref_json ? json_loads(job->ref_json, JSON_DECODE_ANY, NULL) : NULL;
    json_t *doc = json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:s}", "notification",
                            job->notification, "person", job->person, "subject", job->subject,
                            "body", job->body, "ref", ref ? ref : json_null(), "school",
                            job->school ? json_string(job->school) : json_null(), "sent_at",
                            sc_time_format(job->now, when));
    if (!doc)
        return -ENOMEM;
    x->payload = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (!x->payload || !(x->url = strdup(job->address)))
        return -ENOMEM;
    x->payload_len = strlen(x->payload);
    if (s_common_headers(x, "application/json") < 0)
        return -ENOMEM;
    if (st->secret[0]) {
        char hex[65];
        if (notify__hmac_hex(st->secret, x->payload, x->payload_len, hex) < 0)
            return -EIO;
        if (s_header(&x->headers, "X-Safecampus-Signature: sha256=%s", hex) < 0)
            return -ENOMEM;
    }
    return 0;
}

/* A robot: its template rendered as the JSON body; DingTalk-style signing when it has a secret. */
static int s_setup_robot(notify_state_t *st, struct s_xfer *x)
{
    const notify_job_t *job = x->job;
    const json_t *robot = notify__robot(st, job->channel);
    const char *secret = sc_json_str(robot, "secret");
    json_t *vars = s_vars(job);
    x->payload = notify__render(sc_json_str(robot, "template"), vars, 'j');
    json_decref(vars);
    if (!x->payload)
        return -EINVAL;
    x->payload_len = strlen(x->payload);
    if (secret && *secret) {
        /* https://open.dingtalk.com/document/robots/customize-robot-security-settings */
        char ts[32], tosign[600];
        unsigned char mac[32];
        snprintf(ts, sizeof ts, "%lld", (long long)(job->now / 1000));
        int n = snprintf(tosign, sizeof tosign, "%s\n%s", ts, secret);
        if (n < 0 || (size_t)n >= sizeof tosign || s_hmac(secret, tosign, (size_t)n, mac) < 0)
            return -EINVAL;
        char *b64 = s_base64(mac, sizeof mac);
        char *sign = b64 ? curl_easy_escape(NULL, b64, 0) : NULL;
        free(b64);
        if (!sign)
            return -ENOMEM;
        n = asprintf(&x->url, "%s%ctimestamp=%s&sign=%s", job->address,
                     strchr(job->address, '?') ? '&' : '?', ts, sign);
        curl_free(sign);
        if (n < 0) {
            x->url = NULL;
            return -ENOMEM;
        }
    } else if (!(x->url = strdup(job->address))) {
        return -ENOMEM;
    }
    return s_common_headers(x, "application/json");
}

/* The SMS gateway: URL and body from the configured templates; GET when there is no body. */
static int s_setup_sms(notify_state_t *st, struct s_xfer *x)
{
    const char *ct = st->sms_content_type;
    char body_escape = strncmp(ct, "application/x-www-form-urlencoded", 33) == 0 ? 'f' : 'j';
    json_t *vars = s_vars(x->job);
    int rc = -EINVAL;
    if (!(x->url = notify__render(st->sms_url, vars, 'u')))
        goto out;
    if (st->sms_body[0]) {
        if (!(x->payload = notify__render(st->sms_body, vars, body_escape)))
            goto out;
        x->payload_len = strlen(x->payload);
    }
    rc = -ENOMEM;
    if (s_common_headers(x, x->payload ? ct : NULL) < 0)
        goto out;
    size_t i;
    const json_t *h;
    json_array_foreach(st->sms_headers, i,
                       h) if (s_header(&x->headers, "%s", json_string_value(h)) < 0) goto out;
    rc = 0;
out:
    json_decref(vars);
    return rc;
}

/* An RFC 2047 encoded-word run of text, split on character boundaries, folded. */
static void s_put_encoded_words(FILE *f, const char *text)
{
    size_t len = strlen(text), at = 0;
    bool first = true;
    while (at < len || first) {
        size_t n = len - at < 45 ? len - at : 45;
        while (at + n < len && n > 0 && ((unsigned char)text[at + n] & 0xC0) == 0x80)
            n--; /* never cut a UTF-8 sequence */
        if (n == 0)
            n = len - at < 45 ? len - at : 45; /* not UTF-8 after all: cut anywhere */
        char *b64 = s_base64(text + at, n);
        fprintf(f, "%s=?UTF-8?B?%s?=", first ? "" : "\r\n ", b64 ? b64 : "");
        free(b64);
        at += n;
        first = false;
    }
}

static bool s_ascii_printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            return false;
    return true;
}

/* The message: headers (Message-ID and X-Safecampus-Notification carry the key), base64 text. */
static int s_setup_email(notify_state_t *st, struct s_xfer *x)
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    const notify_job_t *job = x->job;
    const char *at = strchr(st->smtp_from, '@');
    time_t secs = (time_t)(job->now / SC_USEC_PER_SEC);
    struct tm tm;
    gmtime_r(&secs, &tm);

    FILE *f = open_memstream(&x->payload, &x->payload_len);
    if (!f)
        return -ENOMEM;
    fprintf(f, "From: <%s>\r\nTo: ", st->smtp_from);
    if (job->name && *job->name) {
        s_put_encoded_words(f, job->name);
        fputc(' ', f);
    }
    fprintf(f, "<%s>\r\nSubject: ", job->address);
    if (s_ascii_printable(job->subject) && strlen(job->subject) < 900)
        fputs(job->subject, f);
    else
        s_put_encoded_words(f, job->subject);
    fprintf(f, "\r\nDate: %s, %02d %s %04d %02d:%02d:%02d +0000\r\n", days[tm.tm_wday], tm.tm_mday,
            months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    /* A code may hold ':', which a msg-id may not: it becomes '='. */
    fputs("Message-ID: <", f);
    for (const char *c = job->notification; *c; c++)
        fputc(*c == ':' ? '=' : *c, f);
    fprintf(f, "@%s>\r\n", at && at[1] ? at + 1 : "safecampus");
    fprintf(f,
            "X-Safecampus-Notification: %s\r\nIdempotency-Key: %s\r\n"
            "Auto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: base64\r\n\r\n",
            job->notification, job->notification);
    char *b64 = s_base64(job->body, strlen(job->body));
    for (size_t i = 0, n = b64 ? strlen(b64) : 0; i < n; i += 76)
        fprintf(f, "%.76s\r\n", b64 + i);
    free(b64);
    if (fclose(f) != 0 || !b64)
        return -ENOMEM;

    char addr[300];
    snprintf(addr, sizeof addr, "<%s>", job->address);
    if (!(x->rcpt = curl_slist_append(NULL, addr)) || !(x->url = strdup(st->smtp_url)))
        return -ENOMEM;
    return 0;
}

/* Creates the easy handle of one transfer with the options every kind shares. */
static int s_setup(notify_state_t *st, struct s_xfer *x)
{
    int rc;
    if ((x->kind == NOTIFY_EMAIL && !st->smtp_url[0]) || (x->kind == NOTIFY_SMS && !st->sms_url[0]))
        x->kind = 0; /* configured away since the request came */
    switch (x->kind) {
    case NOTIFY_WEBHOOK:
        rc = s_setup_webhook(st, x);
        break;
    case NOTIFY_ROBOT:
        rc = s_setup_robot(st, x);
        break;
    case NOTIFY_SMS:
        rc = s_setup_sms(st, x);
        break;
    case NOTIFY_EMAIL:
        rc = s_setup_email(st, x);
        break;
    default:
        rc = -EINVAL;
    }
    if (rc < 0)
        return rc;
    CURL *e = x->easy = curl_easy_init();
    if (!e)
        return -ENOMEM;
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_URL, x->url);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, st->timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, st->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, s_on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    if (x->kind == NOTIFY_EMAIL) {
        char from[300];
        snprintf(from, sizeof from, "<%s>", st->smtp_from);
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
        curl_easy_setopt(e, CURLOPT_MAIL_FROM, from); /* copied by curl */
        curl_easy_setopt(e, CURLOPT_MAIL_RCPT, x->rcpt);
        curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(e, CURLOPT_READFUNCTION, s_on_read);
        curl_easy_setopt(e, CURLOPT_READDATA, x);
        curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)x->payload_len);
        curl_easy_setopt(e, CURLOPT_USE_SSL, st->smtp_tls);
        if (st->smtp_user[0]) {
            curl_easy_setopt(e, CURLOPT_USERNAME, st->smtp_user);
            curl_easy_setopt(e, CURLOPT_PASSWORD, st->smtp_password);
        }
    } else {
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(e, CURLOPT_USERAGENT, S_USER_AGENT);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
        if (x->payload) {
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->payload);
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->payload_len);
        } else {
            curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
        }
    }
    return 0;
}

/* A robot answers 200 with {"errcode":N,"errmsg":…}; N other than 0 is a failure. */
static bool s_robot_refused(const struct s_xfer *x, char *error, size_t len)
{
    json_t *doc = json_loads(x->resp, 0, NULL);
    json_int_t code = sc_json_int(doc, "errcode", 0);
    if (code != 0)
        snprintf(error, len, "errcode %lld: %s", (long long)code,
                 sc_json_str(doc, "errmsg") ? sc_json_str(doc, "errmsg") : "");
    json_decref(doc);
    return code != 0;
}

/* Turns what curl saw into the job's outcome. */
static void s_outcome(struct s_xfer *x)
{
    notify_job_t *job = x->job;
    curl_off_t us = 0;
    long code = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_getinfo(x->easy, CURLINFO_TOTAL_TIME_T, &us);
    job->code = code;
    job->duration_us = us;
    if (!x->done || x->result != CURLE_OK) {
        job->ok = false;
        /* SMTP 5xx is a permanent refusal (no such mailbox …); 4xx and no reply are worth retrying.
         */
        job->permanent = x->kind == NOTIFY_EMAIL && code >= 500 && code < 600;
        const char *what = !x->done       ? "transfer did not complete"
                           : x->errbuf[0] ? x->errbuf
                                          : curl_easy_strerror(x->result);
        if (code)
            snprintf(job->error, sizeof job->error, "%s %ld: %s",
                     x->kind == NOTIFY_EMAIL ? "SMTP" : "HTTP", code, what);
        else
            snprintf(job->error, sizeof job->error, "%s", what);
        return;
    }
    if (x->kind == NOTIFY_EMAIL) {
        job->ok = true;
        return;
    }
    if (code >= 200 && code < 300) {
        job->ok = !(x->kind == NOTIFY_ROBOT && s_robot_refused(x, job->error, sizeof job->error));
        return;
    }
    job->ok = false;
    /* A 4xx other than timeout, too early, too many requests: retrying will not help. */
    job->permanent = code >= 400 && code < 500 && code != 408 && code != 425 && code != 429;
    snprintf(job->error, sizeof job->error, "HTTP %ld", code);
}

static void s_xfer_free(notify_state_t *st, struct s_xfer *x)
{
    if (x->easy) {
        if (x->added)
            curl_multi_remove_handle(st->multi, x->easy);
        curl_easy_cleanup(x->easy);
    }
    curl_slist_free_all(x->headers);
    curl_slist_free_all(x->rcpt);
    free(x->url);
    free(x->payload);
}

int notify__deliver(sc_ctx_t *ctx, notify_state_t *st, notify_job_t *jobs, size_t n)
{
    struct s_xfer *xs = calloc(n ? n : 1, sizeof *xs);
    if (!xs)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        struct s_xfer *x = &xs[i];
        x->job = &jobs[i];
        x->kind = notify__kind(st, jobs[i].channel);
        int rc = s_setup(st, x);
        if (rc == 0 && curl_multi_add_handle(st->multi, x->easy) == CURLM_OK) {
            x->added = true;
            continue;
        }
        /* Nothing was sent. A channel configured away, or a template that cannot be
         * filled, will not get better by waiting; a lack of memory might. */
        jobs[i].ok = false;
        jobs[i].permanent = rc == -EINVAL;
        if (rc == -EINVAL && x->kind == 0)
            snprintf(jobs[i].error, sizeof jobs[i].error, "channel %s is no longer configured",
                     jobs[i].channel);
        else
            snprintf(jobs[i].error, sizeof jobs[i].error, "could not prepare the delivery: %s",
                     rc == -EINVAL ? "a template could not be filled in"
                                   : strerror(rc < 0 ? -rc : ENOMEM));
    }

    /* Every transfer has its own timeout, so this loop ends within about that long. */
    int running = 1;
    while (running > 0) {
        CURLMcode mc = curl_multi_perform(st->multi, &running);
        if (mc == CURLM_OK && running > 0)
            mc = curl_multi_poll(st->multi, NULL, 0, 1000, NULL);
        if (mc != CURLM_OK) {
            SC_LOG_ERR(ctx, "curl multi: %s", curl_multi_strerror(mc));
            break;
        }
    }
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(st->multi, &left))) {
        char *priv = NULL;
        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
        struct s_xfer *x = (struct s_xfer *)priv;
        if (x) {
            x->done = true;
            x->result = msg->data.result;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (xs[i].added)
            s_outcome(&xs[i]);
        s_xfer_free(st, &xs[i]);
    }
    free(xs);
    return 0;
}
