/* A test plugin: the probe under another name, for a plugin that is slow (config delay_ms). */
#define PROBE_NAME "sloth"
#include "probe.c"
