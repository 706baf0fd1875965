/* A test plugin built for another ABI: the loader must refuse it. */
#include <safecampus/plugin.h>

static const struct sc_plugin s_plugin = {
    .abi = SC_PLUGIN_ABI + 98,
    .size = sizeof(struct sc_plugin),
    .name = "bad_abi",
};

SC_PLUGIN_DEFINE(s_plugin)
