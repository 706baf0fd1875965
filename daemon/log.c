/* Logging to stderr: <N> priority prefixes for journald when not on a terminal, plain otherwise. */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int sc__log_level = SC_LOG_INFO;
static bool s_prefix = true;

void sc__log_init(void)
{
    s_prefix = !isatty(STDERR_FILENO);
}

int sc__log_level_parse(const char *s)
{
    static const char *const names[] = {"emerg",   "alert",  "crit", "err",
                                        "warning", "notice", "info", "debug"};
    for (int i = 0; i < 8; i++)
        if (s && strcmp(s, names[i]) == 0)
            return i;
    if (s && strcmp(s, "error") == 0)
        return SC_LOG_ERR;
    if (s && strcmp(s, "warn") == 0)
        return SC_LOG_WARNING;
    return -1;
}

void sc__vlog(int level, const char *component, const char *fmt, va_list ap)
{
    static const char *const tags[] = {"emerg",   "alert",  "crit", "error",
                                       "warning", "notice", "info", "debug"};
    char line[2048];
    int n;
    if (s_prefix)
        n = snprintf(line, sizeof line, "<%d>%s: ", level, component);
    else
        n = snprintf(line, sizeof line, "%s: %s: ", component, tags[level & 7]);
    if (n < 0 || (size_t)n >= sizeof line)
        n = 0;
    int m = vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    size_t len = m < 0 ? (size_t)n : (size_t)n + (size_t)m;
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    while (len > 0 && line[len - 1] == '\n') /* libpq messages end in a newline */
        len--;
    line[len++] = '\n';
    /* One write per line, so lines from different threads never interleave. */
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

void sc__log(int level, const char *component, const char *fmt, ...)
{
    if (level > sc__log_level)
        return;
    va_list ap;
    va_start(ap, fmt);
    sc__vlog(level, component, fmt, ap);
    va_end(ap);
}
