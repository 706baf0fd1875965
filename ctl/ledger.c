/* safecampusctl ledger: merges every plugin's ledger sections into one HTML, CSV or JSON ledger. */
#include "ledger.h"

#include <safecampus/util.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define S_PAGE_DEFAULT 500
#define S_PAGE_MAX 1000 /* what every plugin accepts */
#define S_PATH_MAX 4096

enum s_format { F_HTML, F_CSV, F_JSON };

/* One plugin's ledger answer, read a page at a time. */
typedef struct s_stream {
    char *plugin;
    json_t *page; /* the current page (the plugin's reply) */
    size_t idx;   /* the current section within it */
    bool started; /* the first page was asked for */
    bool done;    /* nothing more to read */
    bool failed;  /* a page after the first could not be read */
} s_stream_t;

/* What the writers need to know of the run. */
typedef struct s_run {
    sc_ctl_query_fn query;
    void *ctl;
    const char *school, *district, *from, *to, *out;
    enum s_format format;
    int page;
    s_stream_t *streams;
    size_t nstreams;
    json_t *meta; /* the school's (or district's) description from the answers */
    /* writer state */
    FILE *f;     /* html/json: the document; csv: the current section's file */
    FILE *index; /* csv: index.csv */
    char path[S_PATH_MAX];
    int nsection;    /* sections written */
    long rows;       /* rows of the current section */
    size_t ncols;    /* columns of the current section */
    json_t *summary; /* [[key, title_zh, title_en, plugin, rows]] written so far */
    bool error;
} s_run_t;

/* ---- the plan's order ------------------------------------------------------------------- */

/*
 * Sections are placed in the order of the school safety work plan by the start of their key;
 * a key matching none goes after the gate register, before the assessment.
 */
static const struct {
    const char *prefix;
    int rank;
} s_ranks[] = {
    {"district", 5},    {"leadership", 10},  {"agreement", 20},     {"rule", 30},
    {"inspection", 40}, {"hazard", 50},      {"rectification", 50}, {"drill", 60},
    {"education", 70},  {"meeting", 80},     {"incident", 90},      {"alert", 90},
    {"alarm", 90},      {"fire", 90},        {"health", 100},       {"absence", 100},
    {"morning", 100},   {"outing", 110},     {"gate", 120},         {"visitor", 120},
    {"card", 120},      {"assessment", 130},
};

static int s_rank(const char *key)
{
    for (size_t i = 0; key && i < sizeof s_ranks / sizeof s_ranks[0]; i++)
        if (strncmp(key, s_ranks[i].prefix, strlen(s_ranks[i].prefix)) == 0)
            return s_ranks[i].rank;
    return 125;
}

/* ---- talking to the daemon --------------------------------------------------------------- */

/*
 * The answer inside a control reply: the reply itself, or its "reply"/"result" member when the
 * daemon wraps it. NULL with *err set when it is an error. Borrowed from reply.
 */
static const json_t *s_unwrap(const json_t *reply, const char **err)
{
    const json_t *inner;
    *err = NULL;
    if (!reply) {
        *err = "the daemon did not answer";
        return NULL;
    }
    if (json_is_false(json_object_get(reply, "ok")) || sc_json_str(reply, "error")) {
        *err = sc_json_str(reply, "detail") ? sc_json_str(reply, "detail")
                                            : sc_json_str(reply, "error");
        if (!*err)
            *err = "refused";
        return NULL;
    }
    if (json_is_object(inner = json_object_get(reply, "reply")) ||
        json_is_object(inner = json_object_get(reply, "result")))
        return s_unwrap(inner, err);
    return reply;
}

/*
 * Asks one plugin for its next ledger page. Returns 0, -ENOTCONN (no daemon), -ENOENT (the
 * plugin keeps no ledger: it refused the `what`) or -EPROTO (any other refusal).
 */
static int s_fetch(s_run_t *run, s_stream_t *s)
{
    const json_t *cursor =
        s->page ? json_object_get(s_unwrap(s->page, &(const char *){0}), "next") : NULL;
    json_t *req = json_pack("{s:s, s:s, s:s, s:s, s:s, s:i}", "cmd", "query", "plugin", s->plugin,
                            "what", "ledger", "from", run->from, "to", run->to, "limit", run->page);
    const char *err = NULL;
    if (!req)
        return -ENOMEM;
    json_object_set_new(req, run->school ? "school" : "district",
                        json_string(run->school ? run->school : run->district));
    if (json_is_string(cursor))
        json_object_set(req, "after", (json_t *)cursor);
    json_t *reply = run->query(run->ctl, req);
    json_decref(req);
    json_decref(s->page);
    s->page = NULL;
    s->idx = 0;
    s->started = true;
    if (!reply) {
        fprintf(stderr, "safecampusctl: ledger: the daemon did not answer\n");
        return -ENOTCONN;
    }
    const json_t *ans = s_unwrap(reply, &err);
    if (!ans || !json_is_array(json_object_get(ans, "sections"))) {
        bool none = err && strncmp(err, "what:", 5) == 0;
        fprintf(stderr, "safecampusctl: ledger: plugin %s: %s\n", s->plugin,
                err ? err : "its answer has no sections");
        json_decref(reply);
        return none ? -ENOENT : -EPROTO;
    }
    s->page = reply;
    return 0;
}

/* The stream's current section, reading the next page when needed; NULL when it has no more. */
static const json_t *s_head(s_run_t *run, s_stream_t *s, int *rc)
{
    const char *err;
    *rc = 0;
    for (;;) {
        if (s->done)
            return NULL;
        if (!s->started) {
            int r = s_fetch(run, s);
            if (r == -ENOENT) { /* a plugin without a ledger: leave it out, go on */
                fprintf(stderr, "safecampusctl: ledger: leaving plugin %s out\n", s->plugin);
                s->done = true;
                return NULL;
            }
            if (r < 0) {
                *rc = r;
                return NULL;
            }
        }
        const json_t *ans = s_unwrap(s->page, &err);
        const json_t *secs = json_object_get(ans, "sections");
        if (s->idx < json_array_size(secs))
            return json_array_get(secs, s->idx);
        if (!json_is_string(json_object_get(ans, "next"))) {
            s->done = true;
            return NULL;
        }
        int r = s_fetch(run, s);
        if (r < 0) { /* mid-way: the ledger would be incomplete */
            s->done = s->failed = true;
            *rc = r;
            return NULL;
        }
    }
}

/* Lists the daemon's plugins. Returns 0 or -errno (message printed). */
static int s_plugins(s_run_t *run)
{
    json_t *req = json_pack("{s:s}", "cmd", "plugins");
    json_t *reply = run->query(run->ctl, req);
    const char *err;
    json_decref(req);
    const json_t *ans = s_unwrap(reply, &err);
    const json_t *list = json_object_get(ans, "plugins"), *p;
    size_t i;
    if (!json_is_array(list)) {
        fprintf(stderr, "safecampusctl: ledger: could not list the plugins: %s\n",
                err ? err : "no plugins in the answer");
        json_decref(reply);
        return reply ? -EPROTO : -ENOTCONN;
    }
    run->streams = calloc(json_array_size(list) + 1, sizeof *run->streams);
    json_array_foreach(list, i, p)
    {
        const char *name = json_is_string(p) ? json_string_value(p) : sc_json_str(p, "name");
        if (!name || !run->streams)
            continue;
        /* The district summary is the ledger plugin's alone. */
        if (run->district && strcmp(name, "ledger") != 0)
            continue;
        run->streams[run->nstreams++].plugin = strdup(name);
    }
    json_decref(reply);
    return run->streams ? 0 : -ENOMEM;
}

/* ---- cells ------------------------------------------------------------------------------- */

/* Whether s starts as an RFC 3339 date-time ("2026-03-05T09:00:00…"). */
static bool s_is_time(const char *s)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:dd";
    for (size_t i = 0; shape[i]; i++) {
        if (shape[i] == 'd' ? !(s[i] >= '0' && s[i] <= '9') : s[i] != shape[i])
            return false;
    }
    return true;
}

/* A cell as text for people: null empty, times "YYYY-MM-DD HH:MM", arrays joined. Malloc'd. */
static char *s_cell_text(const json_t *v, bool for_html)
{
    char buf[64];
    if (!v || json_is_null(v))
        return strdup("");
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (for_html && s_is_time(s)) {
            snprintf(buf, sizeof buf, "%.10s %.5s", s, s + 11);
            return strdup(buf);
        }
        return strdup(s);
    }
    if (json_is_true(v))
        return strdup(for_html ? "是 yes" : "true");
    if (json_is_false(v))
        return strdup(for_html ? "否 no" : "false");
    if (json_is_integer(v)) {
        snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return strdup(buf);
    }
    if (json_is_real(v)) {
        snprintf(buf, sizeof buf, "%.10g", json_real_value(v));
        return strdup(buf);
    }
    if (json_is_array(v)) {
        size_t i, len = 1;
        const json_t *e;
        bool scalars = true;
        json_array_foreach(v, i, e) scalars &= !json_is_array(e) && !json_is_object(e);
        if (scalars) {
            char *out = malloc(1), *t;
            if (!out)
                return NULL;
            out[0] = '\0';
            json_array_foreach(v, i, e)
            {
                if (!(t = s_cell_text(e, for_html)))
                    break;
                char *grown = realloc(out, len + strlen(t) + 2);
                if (!grown) {
                    free(t);
                    break;
                }
                out = grown;
                if (i)
                    strcat(out, "; ");
                strcat(out, t);
                len = strlen(out) + 3;
                free(t);
            }
            return out;
        }
    }
    return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

static void s_html_escape(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&':
            fputs("&amp;", f);
            break;
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        case '\n':
            fputs("<br>", f);
            break;
        default:
            fputc(*s, f);
        }
    }
}

/*
 * A CSV field (RFC 4180). Text that a spreadsheet would run as a formula (= + - @ first) is
 * prefixed with an apostrophe; numbers are left alone.
 */
static void s_csv_field(FILE *f, const json_t *v)
{
    char *t = s_cell_text(v, false);
    if (!t)
        return;
    bool formula = json_is_string(v) && strchr("=+-@", t[0]) && t[0];
    if (formula || strpbrk(t, ",\"\r\n")) {
        fputc('"', f);
        if (formula)
            fputc('\'', f);
        for (const char *p = t; *p; p++) {
            if (*p == '"')
                fputc('"', f);
            fputc(*p, f);
        }
        fputc('"', f);
    } else {
        fputs(t, f);
    }
    free(t);
}

/* Column labels in Chinese for the columns most sections share. */
static const char *s_column_zh(const char *col)
{
    static const struct {
        const char *en, *zh;
    } map[] = {
        {"name", "姓名/名称"},
        {"member", "成员"},
        {"position", "职务"},
        {"duty", "职责"},
        {"since", "起始"},
        {"active", "在任"},
        {"term", "学期"},
        {"party", "签订人"},
        {"party_role", "角色"},
        {"signed_on", "签订日期"},
        {"title", "标题"},
        {"required", "应签/应有"},
        {"signed", "已签"},
        {"unsigned", "未签"},
        {"share", "签订率"},
        {"rule", "制度"},
        {"version", "版本"},
        {"category", "类别"},
        {"drill", "演练"},
        {"kind", "类型"},
        {"status", "状态"},
        {"starts_at", "开始"},
        {"ends_at", "结束"},
        {"participants", "参加人数"},
        {"evacuation_seconds", "疏散用时(秒)"},
        {"problems", "发现问题"},
        {"responsible", "负责人"},
        {"note", "备注"},
        {"month", "月份"},
        {"held", "已举行"},
        {"met", "达标"},
        {"session", "编号"},
        {"held_at", "时间"},
        {"topic", "主题"},
        {"classes", "班级"},
        {"teacher", "教师"},
        {"meeting", "会议"},
        {"chair", "主持"},
        {"attendees", "参会人员"},
        {"decisions", "决定事项"},
        {"minutes", "纪要"},
        {"outing", "活动"},
        {"place", "地点"},
        {"route", "路线"},
        {"headcount", "人数"},
        {"security_measures", "安全措施"},
        {"emergency_plan", "应急预案"},
        {"refusal", "退回原因"},
        {"visit", "登记号"},
        {"organisation", "单位"},
        {"purpose", "事由"},
        {"host", "接待人"},
        {"entered_at", "进入时间"},
        {"exited_at", "离开时间"},
        {"overstayed", "逾时未离"},
        {"date", "日期"},
        {"entries", "进校"},
        {"exits", "离校"},
        {"component", "考核项目"},
        {"measure", "计算方法"},
        {"rate", "完成率"},
        {"weight", "权重"},
        {"points", "得分"},
        {"score", "总分"},
        {"school", "学校"},
        {"hazard", "隐患"},
        {"location", "位置"},
        {"risk", "风险等级"},
        {"deadline", "整改期限"},
        {"incident", "事件"},
        {"severity", "等级"},
        {"person", "责任人"},
        {"class", "班级"},
        {"student", "学生"},
        {"reason", "原因"},
        {"symptoms", "症状"},
        {"done", "完成"},
        {"expected", "应完成"},
        {"updated_at", "更新时间"},
        {"cards", "刷卡人数"},
        {"in_term_days", "在校天数"},
        {"overdue_raised", "已发逾期提醒"},
        {"effective_from", "生效日期"},
        {"published_at", "发布时间"},
        {"url", "链接"},
        {"summary", "摘要"},
        {"counterparty", "甲方"},
        {"gate", "校门"},
        {"vehicle", "车辆"},
        {"duration_minutes", "时长(分钟)"},
        {"submitted_at", "提交时间"},
        {"submitted_by", "提交人"},
        {"decided_by", "审批人"},
        {"decided_at", "审批时间"},
        {"returned_at", "返回时间"},
        {"returned_headcount", "返回人数"},
        {"reminders", "提醒次数"},
        {"incidents", "事件数"},
        {"penalty", "扣分"},
        {"found_at", "发现时间"},
        {"inspections", "安全检查"},
        {"hazards", "隐患整改"},
        {"drills", "疏散演练"},
        {"agreements", "责任书"},
        {"education", "安全教育"},
        {"inspections_completed", "完成检查"},
        {"hazards_assigned", "负责隐患"},
        {"hazards_overdue", "逾期隐患"},
        {"hazards_closed", "已销号隐患"},
        {"drills_led", "组织演练"},
        {"education_sessions", "安全教育"},
        {"outings_led", "带队外出"},
        {"agreements_signed", "签订责任书"},
        {"step", "步骤"},
        {"at", "时间"},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(map[i].en, col) == 0)
            return map[i].zh;
    return NULL;
}

/* ---- writers ----------------------------------------------------------------------------- */

static const char s_css[] =
    "@page{size:A4;margin:15mm 12mm 15mm 12mm}"
    "body{font-family:\"Noto Sans CJK SC\",\"Source Han Sans SC\",\"Microsoft YaHei\","
    "\"PingFang SC\",sans-serif;font-size:9.5pt;color:#000;line-height:1.35}"
    "@media screen{body{max-width:210mm;margin:0 auto;padding:8mm}}"
    "h1{font-size:20pt;text-align:center;margin:30mm 0 4mm}"
    "h1 .en,h2 .en{display:block;font-weight:normal;font-size:.6em;color:#333}"
    "h2{font-size:13pt;border-bottom:1pt solid #000;padding-bottom:1mm;"
    "break-after:avoid;page-break-after:avoid}"
    "section{break-before:page;page-break-before:always}"
    "table{border-collapse:collapse;width:100%;margin:2mm 0 4mm}"
    "thead{display:table-header-group}"
    "tr{break-inside:avoid;page-break-inside:avoid}"
    "th,td{border:.5pt solid #444;padding:.8mm 1.2mm;vertical-align:top;text-align:left;"
    "overflow-wrap:anywhere}"
    "th{background:#e8e8e8;font-weight:bold}th small{display:block;font-weight:normal}"
    "table.meta{width:70%;margin:10mm auto}table.meta th{width:35%}"
    "td.empty{text-align:center;font-style:italic;color:#555}"
    "p.count{font-size:8.5pt;color:#333;text-align:right}"
    "@media print{th{-webkit-print-color-adjust:exact;print-color-adjust:exact}}";

static void s_meta_row(FILE *f, const char *zh, const char *en, const char *value)
{
    fprintf(f, "<tr><th>%s <small>%s</small></th><td>", zh, en);
    s_html_escape(f, value ? value : "");
    fputs("</td></tr>\n", f);
}

static int s_begin(s_run_t *run)
{
    char now[64], stamp[SC_TIME_LEN];
    time_t t = time(NULL);
    strftime(now, sizeof now, "%Y-%m-%d %H:%M", localtime(&t));
    sc_time_format((sc_time_t)t * SC_USEC_PER_SEC, stamp);
    const char *code = run->school ? run->school : run->district;
    const char *name = sc_json_str(run->meta, "name");
    run->summary = json_array();
    if (run->format == F_CSV) {
        snprintf(run->path, sizeof run->path, "%s/index.csv", run->out);
        if (!(run->index = fopen(run->path, "w"))) {
            fprintf(stderr, "safecampusctl: ledger: could not create \"%s\": %s\n", run->path,
                    strerror(errno));
            return -errno;
        }
        fputs("\xEF\xBB\xBF"
              "file,key,title_zh,title_en,plugin,rows\r\n",
              run->index);
        return 0;
    }
    if (run->out) {
        snprintf(run->path, sizeof run->path, "%s/ledger-%s-%s-%s.%s", run->out, code, run->from,
                 run->to, run->format == F_HTML ? "html" : "json");
        if (!(run->f = fopen(run->path, "w"))) {
            fprintf(stderr, "safecampusctl: ledger: could not create \"%s\": %s\n", run->path,
                    strerror(errno));
            return -errno;
        }
    } else {
        run->f = stdout;
    }
    FILE *f = run->f;
    if (run->format == F_JSON) {
        json_t *head = json_pack("{s:s, s:s, s:s, s:s}", run->school ? "school" : "district", code,
                                 "from", run->from, "to", run->to, "generated_at", stamp);
        if (run->meta)
            json_object_set(head, run->school ? "school_info" : "district_info", run->meta);
        char *text = json_dumps(head, JSON_COMPACT);
        json_decref(head);
        if (!text)
            return -ENOMEM;
        text[strlen(text) - 1] = '\0'; /* drop the closing brace: sections follow */
        fprintf(f, "%s,\"sections\":[", text);
        free(text);
        return 0;
    }
    fputs("<!DOCTYPE html>\n<html lang=\"zh-CN\">\n<head>\n<meta charset=\"utf-8\">\n<title>", f);
    s_html_escape(f, run->school ? "学校安全工作台帐 School safety ledger — "
                                 : "学区安全考核汇总 District safety summary — ");
    s_html_escape(f, name ? name : code);
    fprintf(f, " %s – %s</title>\n<style>%s</style>\n</head>\n<body>\n", run->from, run->to, s_css);
    fprintf(f, "<header>\n<h1>%s<span class=\"en\">%s</span></h1>\n<table class=\"meta\">\n",
            run->school ? "学校安全工作台帐" : "学区安全考核汇总",
            run->school ? "School safety ledger" : "District safety summary");
    if (run->school) {
        s_meta_row(f, "学校", "School", name ? name : code);
        s_meta_row(f, "学校代码", "School code", code);
        s_meta_row(f, "学区", "District", sc_json_str(run->meta, "district"));
    } else {
        s_meta_row(f, "学区", "District", code);
    }
    char period[64];
    snprintf(period, sizeof period, "%s – %s", run->from, run->to);
    s_meta_row(f, "期间", "Period", period);
    s_meta_row(f, "生成时间", "Generated", now);
    fputs("</table>\n</header>\n", f);
    return 0;
}

/* A file name for a section's CSV: its number and key, letters, digits and _ only. */
static void s_csv_name(char *out, size_t len, int n, const char *key)
{
    size_t off = (size_t)snprintf(out, len, "%02d_", n);
    for (const char *k = key; *k && off + 5 < len && off < 80; k++)
        out[off++] = ((*k >= 'a' && *k <= 'z') || (*k >= '0' && *k <= '9') || *k == '_') ? *k
                     : (*k >= 'A' && *k <= 'Z')                                          ? *k + 32
                                                                                         : '_';
    snprintf(out + off, len - off, ".csv");
}

static int s_section_begin(s_run_t *run, const json_t *sec, const char *plugin)
{
    const char *key = sc_json_str(sec, "key");
    const char *zh = sc_json_str(sec, "title_zh"), *en = sc_json_str(sec, "title_en");
    const json_t *cols = json_object_get(sec, "columns"), *c;
    size_t i;
    run->nsection++;
    run->rows = 0;
    run->ncols = json_array_size(cols);
    json_array_append_new(run->summary, json_pack("[s?, s?, s?, s, i]", key, zh, en, plugin, 0));
    if (run->format == F_CSV) {
        char name[128];
        s_csv_name(name, sizeof name, run->nsection, key ? key : "section");
        snprintf(run->path, sizeof run->path, "%s/%s", run->out, name);
        if (!(run->f = fopen(run->path, "w"))) {
            fprintf(stderr, "safecampusctl: ledger: could not create \"%s\": %s\n", run->path,
                    strerror(errno));
            return -errno;
        }
        fputs("\xEF\xBB\xBF", run->f); /* so that spreadsheets read UTF-8 */
        json_array_foreach(cols, i, c)
        {
            if (i)
                fputc(',', run->f);
            s_csv_field(run->f, c);
        }
        fputs("\r\n", run->f);
        return 0;
    }
    FILE *f = run->f;
    if (run->format == F_JSON) {
        json_t *head =
            json_pack("{s:s?, s:s?, s:s?, s:s, s:O}", "key", key, "title_zh", zh, "title_en", en,
                      "plugin", plugin, "columns", cols ? cols : json_array());
        char *text = head ? json_dumps(head, JSON_COMPACT) : NULL;
        json_decref(head);
        if (!text)
            return -ENOMEM;
        text[strlen(text) - 1] = '\0';
        fprintf(f, "%s\n%s,\"rows\":[", run->nsection > 1 ? "," : "", text);
        free(text);
        return 0;
    }
    fprintf(f, "<section id=\"s%d\">\n<h2>%d. ", run->nsection, run->nsection);
    s_html_escape(f, zh ? zh : (key ? key : ""));
    fputs("<span class=\"en\">", f);
    s_html_escape(f, en ? en : (key ? key : ""));
    fputs("</span></h2>\n<table>\n<thead><tr>", f);
    json_array_foreach(cols, i, c)
    {
        const char *col = json_string_value(c) ? json_string_value(c) : "";
        const char *czh = s_column_zh(col);
        fputs("<th>", f);
        if (czh) {
            s_html_escape(f, czh);
            fputs("<small>", f);
        }
        s_html_escape(f, col);
        fputs(czh ? "</small></th>" : "</th>", f);
    }
    fputs("</tr></thead>\n<tbody>\n", f);
    return 0;
}

static int s_row(s_run_t *run, const json_t *row)
{
    FILE *f = run->f;
    const json_t *v;
    size_t i;
    run->rows++;
    if (run->format == F_CSV) {
        json_array_foreach(row, i, v)
        {
            if (i)
                fputc(',', f);
            s_csv_field(f, v);
        }
        fputs("\r\n", f);
        return ferror(f) ? -EIO : 0;
    }
    if (run->format == F_JSON) {
        if (run->rows > 1)
            fputc(',', f);
        fputc('\n', f);
        return json_dumpf(row, f, JSON_COMPACT | JSON_REAL_PRECISION(12)) < 0 ? -EIO : 0;
    }
    fputs("<tr>", f);
    json_array_foreach(row, i, v)
    {
        char *t = s_cell_text(v, true);
        fputs("<td>", f);
        s_html_escape(f, t ? t : "");
        fputs("</td>", f);
        free(t);
    }
    fputs("</tr>\n", f);
    return ferror(f) ? -EIO : 0;
}

static int s_section_end(s_run_t *run)
{
    json_t *last = json_array_get(run->summary, json_array_size(run->summary) - 1);
    json_array_set_new(last, 4, json_integer(run->rows));
    if (run->format == F_CSV) {
        char name[128];
        int rc = fclose(run->f) == 0 ? 0 : -EIO;
        run->f = NULL;
        s_csv_name(name, sizeof name, run->nsection,
                   json_string_value(json_array_get(last, 0))
                       ? json_string_value(json_array_get(last, 0))
                       : "section");
        json_t *line =
            json_pack("[s, O, O, O, O, O]", name, json_array_get(last, 0), json_array_get(last, 1),
                      json_array_get(last, 2), json_array_get(last, 3), json_array_get(last, 4));
        const json_t *v;
        size_t i;
        json_array_foreach(line, i, v)
        {
            if (i)
                fputc(',', run->index);
            s_csv_field(run->index, v);
        }
        fputs("\r\n", run->index);
        json_decref(line);
        return rc;
    }
    FILE *f = run->f;
    if (run->format == F_JSON) {
        fprintf(f, "\n],\"count\":%ld}", run->rows);
        return ferror(f) ? -EIO : 0;
    }
    if (run->rows == 0)
        fprintf(f, "<tr><td class=\"empty\" colspan=\"%zu\">无记录 None</td></tr>\n",
                run->ncols ? run->ncols : 1);
    fprintf(f, "</tbody>\n</table>\n<p class=\"count\">共 %ld 条 · %ld rows</p>\n</section>\n",
            run->rows, run->rows);
    return ferror(f) ? -EIO : 0;
}

/* Closes the document: the HTML ends with its table of sections and row counts. */
static int s_end(s_run_t *run)
{
    int rc = 0;
    if (run->format == F_CSV) {
        rc = fclose(run->index) == 0 ? 0 : -EIO;
        run->index = NULL;
        return rc;
    }
    FILE *f = run->f;
    if (run->format == F_JSON) {
        fputs("\n]}\n", f);
    } else {
        const json_t *s;
        size_t i;
        fputs("<section id=\"contents\">\n<h2>目录与条数<span class=\"en\">Sections and row "
              "counts</span></h2>\n<table>\n<thead><tr><th>#</th><th>部分<small>section</small>"
              "</th><th>Section</th><th>来源<small>plugin</small></th><th>条数<small>rows</small>"
              "</th></tr></thead>\n<tbody>\n",
              f);
        json_array_foreach(run->summary, i, s)
        {
            fprintf(f, "<tr><td><a href=\"#s%zu\">%zu</a></td><td>", i + 1, i + 1);
            for (size_t k = 1; k <= 3; k++) {
                const char *t = json_string_value(json_array_get(s, k));
                if (k > 1)
                    fputs("</td><td>", f);
                s_html_escape(f, t ? t : "");
            }
            fprintf(f, "</td><td>%" JSON_INTEGER_FORMAT "</td></tr>\n",
                    json_integer_value(json_array_get(s, 4)));
        }
        fputs("</tbody>\n</table>\n</section>\n</body>\n</html>\n", f);
    }
    if (fflush(f) != 0 || ferror(f))
        rc = -EIO;
    if (f != stdout && fclose(f) != 0)
        rc = -EIO;
    run->f = NULL;
    return rc;
}

/* ---- the merge --------------------------------------------------------------------------- */

/*
 * Writes every section of every stream, each whole, in plan order: at each step the stream whose
 * current section ranks first (ties: the earlier plugin) gives that section, page after page,
 * until its key changes. A stream's own order is kept. Returns 0 or -errno.
 */
static int s_merge(s_run_t *run)
{
    int rc = 0;
    for (;;) {
        s_stream_t *best = NULL;
        int best_rank = 0;
        for (size_t i = 0; i < run->nstreams; i++) {
            const json_t *h = s_head(run, &run->streams[i], &rc);
            if (rc < 0)
                return rc;
            int r = h ? s_rank(sc_json_str(h, "key")) : 0;
            if (h && (!best || r < best_rank)) {
                best = &run->streams[i];
                best_rank = r;
            }
        }
        if (!best)
            return 0;
        const json_t *sec = s_head(run, best, &rc);
        char key[256];
        snprintf(key, sizeof key, "%s", sc_json_str(sec, "key") ? sc_json_str(sec, "key") : "");
        if ((rc = s_section_begin(run, sec, best->plugin)) < 0)
            return rc;
        while (sec) {
            const json_t *row;
            size_t i;
            json_array_foreach(json_object_get(sec, "rows"), i, row)
            {
                if ((rc = s_row(run, row)) < 0)
                    return rc;
            }
            best->idx++;
            sec = s_head(run, best, &rc); /* may read the next page, freeing this one */
            if (rc < 0)
                return rc;
            if (sec && strcmp(sc_json_str(sec, "key") ? sc_json_str(sec, "key") : "", key) != 0)
                break;
        }
        if ((rc = s_section_end(run)) < 0)
            return rc;
    }
}

/* The description of the school or district for the cover: the first answer that has one. */
static int s_meta(s_run_t *run)
{
    int rc = 0;
    const char *err;
    for (size_t i = 0; i < run->nstreams && !run->meta; i++) {
        s_head(run, &run->streams[i], &rc);
        if (rc < 0)
            return rc;
        const json_t *ans = s_unwrap(run->streams[i].page, &err);
        const json_t *m = json_object_get(ans, run->school ? "school" : "district");
        if (json_is_object(m))
            run->meta = json_incref((json_t *)m);
    }
    return 0;
}

/* ---- options ----------------------------------------------------------------------------- */

static void s_usage(FILE *f)
{
    fputs("usage: safecampusctl ledger (--school CODE | --district CODE) --from YYYY-MM-DD\n"
          "                            --to YYYY-MM-DD [--format html|csv|json] [--out DIR]\n"
          "                            [--page ROWS]\n",
          f);
}

static bool s_code_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return n > 0 && n <= 64 &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:") == n;
}

/* Reads the options into run; 0, or 2 (usage, message printed), or 1 for --help (printed). */
static int s_options(s_run_t *run, int argc, char **argv)
{
    const char *format = "html", *page = NULL;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *eq = strchr(arg, '=');
        char name[32];
        const char *val;
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            s_usage(stdout);
            return 1;
        }
        if (strncmp(arg, "--", 2) != 0) {
            fprintf(stderr, "safecampusctl: ledger: unexpected argument \"%s\"\n", arg);
            s_usage(stderr);
            return 2;
        }
        snprintf(name, sizeof name, "%.*s", eq ? (int)(eq - arg) : (int)strlen(arg), arg);
        if (eq) {
            val = eq + 1;
        } else if (i + 1 < argc) {
            val = argv[++i];
        } else {
            fprintf(stderr, "safecampusctl: ledger: %s needs a value\n", name);
            return 2;
        }
        if (strcmp(name, "--school") == 0)
            run->school = val;
        else if (strcmp(name, "--district") == 0)
            run->district = val;
        else if (strcmp(name, "--from") == 0)
            run->from = val;
        else if (strcmp(name, "--to") == 0)
            run->to = val;
        else if (strcmp(name, "--format") == 0)
            format = val;
        else if (strcmp(name, "--out") == 0)
            run->out = val;
        else if (strcmp(name, "--page") == 0)
            page = val;
        else {
            fprintf(stderr, "safecampusctl: ledger: unknown option %s\n", name);
            s_usage(stderr);
            return 2;
        }
    }
    int64_t a, b;
    const char *bad = NULL;
    if (!run->school == !run->district)
        bad = "give one of --school and --district";
    else if (!s_code_ok(run->school ? run->school : run->district))
        bad = "--school/--district: must be a code of 1 to 64 letters, digits and - _ . :";
    else if (!run->from || !run->to || sc_date_parse(run->from, &a) < 0 ||
             sc_date_parse(run->to, &b) < 0)
        bad = "--from and --to: expected dates YYYY-MM-DD";
    else if (b < a)
        bad = "--to: must not be before --from";
    if (!bad) {
        if (strcmp(format, "html") == 0)
            run->format = F_HTML;
        else if (strcmp(format, "csv") == 0)
            run->format = F_CSV;
        else if (strcmp(format, "json") == 0)
            run->format = F_JSON;
        else
            bad = "--format: must be one of html, csv, json";
    }
    if (!bad && run->format == F_CSV && !run->out)
        bad = "--out DIR is needed for --format csv (one file per section)";
    run->page = S_PAGE_DEFAULT;
    if (!bad && page) {
        char *end;
        long n = strtol(page, &end, 10);
        if (*end || n < 1 || n > S_PAGE_MAX)
            bad = "--page: must be between 1 and 1000";
        run->page = (int)n;
    }
    if (bad) {
        fprintf(stderr, "safecampusctl: ledger: %s\n", bad);
        s_usage(stderr);
        return 2;
    }
    return 0;
}

int sc__ctl_ledger(int argc, char **argv, sc_ctl_query_fn query, void *ctl)
{
    s_run_t run = {.query = query, .ctl = ctl};
    int rc = s_options(&run, argc, argv);
    if (rc != 0)
        return rc == 1 ? 0 : rc;
    if (run.out && mkdir(run.out, 0755) < 0 && errno != EEXIST) {
        fprintf(stderr, "safecampusctl: ledger: could not create \"%s\": %s\n", run.out,
                strerror(errno));
        return 1;
    }
    if ((rc = s_plugins(&run)) == 0 && (rc = s_meta(&run)) == 0 && (rc = s_begin(&run)) == 0) {
        rc = s_merge(&run);
        if (rc < 0 && run.format != F_CSV && run.f) {
            /* Close what was written so far; the run fails and says so. */
            if (run.f != stdout)
                fclose(run.f);
            run.f = NULL;
        } else if (rc == 0) {
            rc = s_end(&run);
        }
    }
    if (run.format == F_CSV) {
        if (run.f)
            fclose(run.f);
        if (run.index)
            fclose(run.index);
    }
    if (rc == -EIO)
        fprintf(stderr, "safecampusctl: ledger: could not write the ledger: %s\n", strerror(errno));
    else if (rc < 0)
        fprintf(stderr, "safecampusctl: ledger: the ledger is incomplete\n");
    else if (run.out)
        fprintf(stderr, "safecampusctl: ledger: %d sections written to %s\n", run.nsection,
                run.format == F_CSV ? run.out : run.path);
    for (size_t i = 0; i < run.nstreams; i++) {
        free(run.streams[i].plugin);
        json_decref(run.streams[i].page);
    }
    free(run.streams);
    json_decref(run.meta);
    json_decref(run.summary);
    return rc < 0 ? 1 : 0;
}
