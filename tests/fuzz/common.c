/* Helpers for the fuzz targets that load the daemon: scratch files, the plugin registry. */
#include "common.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *fz_tmpdir(void)
{
    static char dir[PATH_MAX];
    if (dir[0])
        return dir;
    const char *t = getenv("TMPDIR");
    const char *pick = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : t && *t ? t : "/tmp";
    snprintf(dir, sizeof dir, "%s", pick);
    return dir;
}

int fz_scratch(const char *tag, char *path, size_t pathlen)
{
    snprintf(path, pathlen, "%s/sc-fuzz-%s-%ld-XXXXXX", fz_tmpdir(), tag, (long)getpid());
    int fd = mkstemp(path);
    if (fd < 0) {
        perror(path);
        abort();
    }
    return fd;
}

void fz_rewrite(int fd, const void *data, size_t len)
{
    if (ftruncate(fd, 0) < 0 || (len && pwrite(fd, data, len, 0) != (ssize_t)len)) {
        perror("fuzz: scratch file");
        abort();
    }
}

static bool s_is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

const char *fz_plugins_dir(void)
{
    static char dir[PATH_MAX];
    if (dir[0])
        return dir;
    const char *env = getenv("SC_FUZZ_PLUGINS");
    if (env && *env) {
        snprintf(dir, sizeof dir, "%s", env);
        return dir;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash)
            *slash = '\0';
        snprintf(dir, sizeof dir, "%s/plugins", exe); /* build/fuzz/plugins */
        if (s_is_dir(dir))
            return dir;
        snprintf(dir, sizeof dir, "%s/../plugins", exe); /* build/plugins */
        if (s_is_dir(dir))
            return dir;
    }
    snprintf(dir, sizeof dir, "build/plugins");
    return dir;
}

void fz_load(const char *extra, sc__config_t **cfg, sc__registry_t **reg)
{
    char path[PATH_MAX], err[1024];
    int fd = fz_scratch("conf", path, sizeof path);
    char text[8192];
    int n = snprintf(text, sizeof text, "%s\nplugins: { dir = \"%s\"; };\n", extra ? extra : "",
                     fz_plugins_dir());
    fz_rewrite(fd, text, (size_t)n);
    close(fd);
    int rc = sc__config_load(path, cfg, err, sizeof err);
    unlink(path);
    if (rc < 0) {
        fprintf(stderr, "fuzz: the target's own config is refused: %s\n", err);
        abort();
    }
    if (reg && sc__registry_load(*cfg, reg, err, sizeof err) < 0) {
        fprintf(stderr, "fuzz: could not load the plugins from %s: %s\n", fz_plugins_dir(), err);
        abort();
    }
    if (reg && (*reg)->nslots == 0) {
        fprintf(stderr, "fuzz: no plugins in %s (run make plugins, or set SC_FUZZ_PLUGINS)\n",
                fz_plugins_dir());
        abort();
    }
}

/* The same count as the envelope parser's, without its early stop. */
int fz_depth(const uint8_t *buf, size_t len)
{
    int depth = 0, max = 0;
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        char c = (char)buf[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = false;
            continue;
        }
        if (c == '"')
            in_string = true;
        else if ((c == '[' || c == '{') && ++depth > max)
            max = depth;
        else if (c == ']' || c == '}')
            depth--;
    }
    return max;
}

/*
 * Leaks LeakSanitizer should not report: libconfig 1.5's scanner loses a string
 * token, or the buffer it was gathering, on some syntax errors (its own, once per
 * refused file, not safecampus's). Only scanner frames: a setting safecampus
 * forgot to free would be allocated elsewhere in libconfig and still be reported.
 */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libconfig_yylex\nleak:strbuf_append\n";
}
