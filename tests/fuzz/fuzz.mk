# tests/fuzz/fuzz.mk: the libFuzzer targets, included by the Makefile.
#
#   make fuzz                  builds, then runs each target for FUZZ_SECONDS (default 60)
#   make fuzz FUZZ_SECONDS=600 FUZZ_TARGETS='envelope validators'
#   make fuzz-smoke            each target for 5 s (what scripts/run-tests runs)
#   make fuzz-build            only builds
#
# Everything is built with clang (FUZZ_CC) and -fsanitize=fuzzer,address,undefined
# under build/fuzz/: objects in build/fuzz/obj (never build/obj, whose gcc objects
# have no instrumentation), the helpers in build/fuzz/libsccommon.a, the plugins
# again in build/fuzz/plugins/*.so (instrumented, so a plugin's validator gives the
# fuzzer coverage feedback and runs under ASan/UBSan), the targets build/fuzz/fuzz_*.
# The running is in scripts/run-fuzz; see tests/fuzz/README.md. Without clang or
# libFuzzer's runtime every fuzz goal prints one line and succeeds, and make test
# does not build them.

FUZZ_CC ?= clang
FUZZ_HAVE_CC := $(shell command -v $(FUZZ_CC) 2>/dev/null)
# libFuzzer's runtime is a separate Debian package (libclang-rt-14-dev), only recommended by clang.
FUZZ_HAVE_RT := $(if $(FUZZ_HAVE_CC),$(wildcard $(shell $(FUZZ_CC) -print-resource-dir \
    2>/dev/null)/lib/linux/libclang_rt.fuzzer-*.a))
FUZZ_DIR := $(B)/fuzz
FUZZ_OBJ := $(FUZZ_DIR)/obj

FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -g -O1 -Wall -Wextra -MMD -MP -fPIC -Iinclude \
    $(PKG_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer-no-link
FUZZ_LDFLAGS := $(FUZZ_SAN)

FUZZ_NAMES := $(sort $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c)))
FUZZ_BINS := $(FUZZ_NAMES:%=$(FUZZ_DIR)/fuzz_%)

FUZZ_LIB_OBJ := $(LIB_SRC:%.c=$(FUZZ_OBJ)/%.o)
FUZZ_DAEMON_OBJ := $(patsubst %.c,$(FUZZ_OBJ)/%.o,$(filter-out daemon/main.c,$(DAEMON_SRC))) \
    $(FUZZ_OBJ)/gen/core_sql.o
FUZZ_PLUGINS_SO := $(PLUGIN_NAMES:%=$(FUZZ_DIR)/plugins/%.so)

$(FUZZ_OBJ)/%.o: %.c | $(B)/config.mk
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_EXTRA) -c $< -o $@

$(FUZZ_OBJ)/gen/%.o: $(B)/gen/%.c | $(B)/config.mk
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@

$(FUZZ_DIR)/libsccommon.a: $(FUZZ_LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

# The plugins, as the Makefile builds them (their plugin.mk flags, hidden symbols,
# the helpers kept private), but with the fuzzer's instrumentation. ASan, UBSan and
# the coverage callbacks come from the fuzzer binary that dlopen()s them, so no -z defs.
define fuzz_plugin_rules
$(1)_FUZZ_OBJ := $$($(1)_SRC:%.c=$(FUZZ_OBJ)/%.o) $(FUZZ_OBJ)/gen/$(1)_sql.o
$$($(1)_SRC:%.c=$(FUZZ_OBJ)/%.o): FUZZ_EXTRA := -fvisibility=hidden $$($(1)_CFLAGS)
$(FUZZ_DIR)/plugins/$(1).so: $$($(1)_FUZZ_OBJ) $(FUZZ_DIR)/libsccommon.a
	@mkdir -p $$(dir $$@)
	$(FUZZ_CC) $(FUZZ_LDFLAGS) -shared -fvisibility=hidden -Wl,--exclude-libs,ALL -o $$@ $$^ \
	    $$($(1)_LIBS) $(PKG_LIBS) -lm
endef
$(foreach p,$(PLUGIN_NAMES),$(eval $(call fuzz_plugin_rules,$(p))))

# fuzz_time and fuzz_utf8 need only the helpers and the invariants; the others the daemon's
# modules (not main.c) as well.
FUZZ_LIB_ONLY := time utf8
$(FUZZ_LIB_ONLY:%=$(FUZZ_DIR)/fuzz_%): $(FUZZ_DIR)/fuzz_%: $(FUZZ_OBJ)/tests/fuzz/fuzz_%.o \
    $(FUZZ_OBJ)/tests/fuzz/invariant.o $(FUZZ_DIR)/libsccommon.a
	$(FUZZ_CC) $(FUZZ_LDFLAGS) -fsanitize=fuzzer -o $@ $^ $(PKG_LIBS) -lm

$(FUZZ_DIR)/fuzz_%: $(FUZZ_OBJ)/tests/fuzz/fuzz_%.o $(FUZZ_OBJ)/tests/fuzz/common.o \
    $(FUZZ_OBJ)/tests/fuzz/invariant.o \
    $(FUZZ_DAEMON_OBJ) $(FUZZ_DIR)/libsccommon.a
	$(FUZZ_CC) $(FUZZ_LDFLAGS) -fsanitize=fuzzer -o $@ $^ $(PKG_LIBS) -ldl -lpthread -lm

.PHONY: fuzz-build fuzz-smoke
ifeq ($(FUZZ_HAVE_CC),)
fuzz fuzz-smoke fuzz-build:
	@echo "fuzz: $(FUZZ_CC) not found, fuzz targets skipped (scripts/install-deps --dev installs clang)"
else ifeq ($(FUZZ_HAVE_RT),)
fuzz fuzz-smoke fuzz-build:
	@echo "fuzz: libFuzzer's runtime not found, fuzz targets skipped (scripts/install-deps --dev installs libclang-rt-14-dev)"
else
fuzz-build: $(FUZZ_BINS) $(FUZZ_PLUGINS_SO)

fuzz: fuzz-build
	@FUZZ_CC=$(FUZZ_CC) FUZZ_NO_BUILD=1 FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/run-fuzz full $(FUZZ_TARGETS)

fuzz-smoke: fuzz-build
	@FUZZ_CC=$(FUZZ_CC) FUZZ_NO_BUILD=1 FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/run-fuzz smoke $(FUZZ_TARGETS)

# make test runs the smoke pass (scripts/run-tests → scripts/run-fuzz smoke): build first.
test: fuzz-build
endif

# Objects reached only through the pattern rules above are not intermediate files.
.SECONDARY: $(FUZZ_DAEMON_OBJ) $(FUZZ_OBJ)/tests/fuzz/common.o \
    $(FUZZ_NAMES:%=$(FUZZ_OBJ)/tests/fuzz/fuzz_%.o)

-include $(shell find $(FUZZ_OBJ) -name '*.d' 2>/dev/null)
