/* Helpers shared by the libFuzzer targets: scratch files, the plugin registry, invariants. */
#ifndef SC_FUZZ_COMMON_H
#define SC_FUZZ_COMMON_H

#include "../../daemon/internal.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Where scratch files go: /dev/shm when writable (no disk I/O per input), else $TMPDIR, /tmp. */
const char *fz_tmpdir(void);

/*
 * Creates a scratch file under fz_tmpdir() named after `tag` and returns its
 * open descriptor, the path written into path (PATH_MAX bytes). Aborts on failure.
 */
int fz_scratch(const char *tag, char *path, size_t pathlen);

/* Replaces the contents of the open file fd with data. Aborts on failure. */
void fz_rewrite(int fd, const void *data, size_t len);

/*
 * The folder of plugin .so files the targets load: $SC_FUZZ_PLUGINS, else
 * plugins/ next to the fuzzer binary (build/fuzz/plugins: built with the same
 * instrumentation, so the validators give coverage feedback and run under
 * ASan/UBSan), else build/plugins (the ordinary build) as a fallback.
 */
const char *fz_plugins_dir(void);

/*
 * Loads a config whose text is `extra` plus plugins.dir = fz_plugins_dir(), and
 * the registry of every plugin in that folder. Aborts with the daemon's message
 * when either fails: a target with no plugins would fuzz almost nothing.
 */
void fz_load(const char *extra, sc__config_t **cfg, sc__registry_t **reg);

/* True when s is valid UTF-8 that jansson accepts as a string (what every reply needs). */
bool fz_utf8(const char *s);

/* Prints the broken invariant and aborts, so libFuzzer records the input as a crash. */
__attribute__((noreturn, format(printf, 1, 2))) void fz_fail(const char *fmt, ...);

/* Deepest nesting of arrays and objects in a JSON text (strings skipped). */
int fz_depth(const uint8_t *buf, size_t len);

#endif
