# safecampus: one non-recursive Makefile. Everything it builds lands under build/.

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
DATADIR ?= $(PREFIX)/share
SYSCONFDIR ?= /etc
UNITDIR ?= $(PREFIX)/lib/systemd/system
DESTDIR ?=

CC ?= cc
CFLAGS ?= -O2 -g
LDFLAGS ?=
# Sanitizer builds live apart, so switching SAN never mixes objects.
ifeq ($(SAN),1)
B := build/san
else
B := build
endif

PKGS := libzmq libpq libconfig jansson

# The rule for config.mk below comes first in the file: plain `make` must still mean `all`.
.DEFAULT_GOAL := all

# Flags come from pkg-config once the packages are there; scripts/install-deps
# adds what a fresh machine lacks, and make restarts with the result.
-include $(B)/config.mk
$(B)/config.mk: scripts/install-deps Makefile
	@scripts/install-deps
	@mkdir -p $(B)
	@{ echo "PKG_CFLAGS := $$(pkg-config --cflags $(PKGS))"; \
	   echo "PKG_LIBS := $$(pkg-config --libs $(PKGS))"; \
	   echo "ICAL_CFLAGS := $$(pkg-config --cflags libical)"; \
	   echo "ICAL_LIBS := $$(pkg-config --libs libical)"; \
	   echo "CURL_CFLAGS := $$(pkg-config --cflags libcurl)"; \
	   echo "CURL_LIBS := $$(pkg-config --libs libcurl)"; \
	   echo "CRYPTO_CFLAGS := $$(pkg-config --cflags libcrypto)"; \
	   echo "CRYPTO_LIBS := $$(pkg-config --libs libcrypto)"; \
	   echo "CMOCKA_LIBS := $$(pkg-config --libs cmocka)"; } > $@.tmp && mv $@.tmp $@

ifeq ($(SAN),1)
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
endif

WARN := -Wall -Wextra -Wshadow -Werror
BASE_CFLAGS := -std=c11 -D_GNU_SOURCE -DSC_SYSCONFDIR='"$(SYSCONFDIR)"' $(WARN) -MMD -MP -Iinclude $(PKG_CFLAGS) $(SAN_FLAGS) $(CFLAGS)
BASE_LDFLAGS := $(SAN_FLAGS) $(LDFLAGS)

.PHONY: all test unit integration run bench fuzz install format clean distclean
# Keep intermediate objects: relinking every test binary on every run is wasted time.
.SECONDARY:
all: $(B)/safecampusd $(B)/safecampusctl plugins

# ---- shared helpers (linked into the daemon, the ctl and every plugin) ----
LIB_SRC := $(wildcard lib/*.c)
LIB_OBJ := $(LIB_SRC:%.c=$(B)/obj/%.o)
$(B)/libsccommon.a: $(LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(B)/obj/%.o: %.c | $(B)/config.mk
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) -fPIC $(EXTRA_CFLAGS) -c $< -o $@

# ---- build tool: SQL migrations embedded in the binaries that own them ----
$(B)/sqlembed: tools/sqlembed.c
	@mkdir -p $(B)
	$(CC) -O2 -Wall -Wextra -Werror -o $@ $<

# ---- safecampusd ----
DAEMON_SRC := $(wildcard daemon/*.c)
DAEMON_OBJ := $(DAEMON_SRC:%.c=$(B)/obj/%.o) $(B)/obj/gen/core_sql.o
DAEMON_LIB_OBJ := $(filter-out $(B)/obj/daemon/main.o,$(DAEMON_OBJ))
CORE_SQL := $(sort $(wildcard daemon/sql/*.sql))

$(B)/gen/core_sql.c: $(CORE_SQL) $(B)/sqlembed
	@mkdir -p $(dir $@)
	$(B)/sqlembed sc__core_migrations $@ $(CORE_SQL)

$(B)/obj/gen/%.o: $(B)/gen/%.c | $(B)/config.mk
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) -fPIC $(EXTRA_CFLAGS) -c $< -o $@

$(B)/safecampusd: $(DAEMON_OBJ) $(B)/libsccommon.a
	$(CC) $(BASE_LDFLAGS) -rdynamic -o $@ $^ $(PKG_LIBS) -ldl -lpthread -lm

# ---- safecampusctl ----
CTL_SRC := $(wildcard ctl/*.c)
CTL_OBJ := $(CTL_SRC:%.c=$(B)/obj/%.o)
CTL_DAEMON_OBJ := $(B)/obj/daemon/config.o $(B)/obj/daemon/pconfig.o $(B)/obj/daemon/log.o
$(B)/safecampusctl: $(CTL_OBJ) $(CTL_DAEMON_OBJ) $(B)/libsccommon.a
	$(CC) $(BASE_LDFLAGS) -o $@ $^ $(PKG_LIBS)

# ---- plugins: plugins/<name>/*.c + plugins/<name>/sql/*.sql → build/plugins/<name>.so ----
# A plugin's plugin.mk may set <name>_CFLAGS and <name>_LIBS.
PLUGIN_NAMES := $(notdir $(patsubst %/,%,$(dir $(wildcard plugins/*/*.c))))
PLUGIN_NAMES := $(sort $(PLUGIN_NAMES))
-include $(wildcard plugins/*/plugin.mk)

define plugin_rules
$(1)_SRC := $$(wildcard plugins/$(1)/*.c)
$(1)_SQL := $$(sort $$(wildcard plugins/$(1)/sql/*.sql))
$(1)_OBJ := $$($(1)_SRC:%.c=$(B)/obj/%.o) $(B)/obj/gen/$(1)_sql.o
$$($(1)_SRC:%.c=$(B)/obj/%.o): EXTRA_CFLAGS := -fvisibility=hidden $$($(1)_CFLAGS)
$(B)/obj/gen/$(1)_sql.o: EXTRA_CFLAGS := -fvisibility=hidden
$(B)/gen/$(1)_sql.c: $$($(1)_SQL) $(B)/sqlembed
	@mkdir -p $$(dir $$@)
	$(B)/sqlembed $(1)_migrations $$@ $$($(1)_SQL)
$(B)/plugins/$(1).so: $$($(1)_OBJ) $(B)/libsccommon.a
	@mkdir -p $$(dir $$@)
	$$(CC) $$(BASE_LDFLAGS) -shared -fvisibility=hidden -Wl,--exclude-libs,ALL -Wl,-z,defs -o $$@ $$^ $$($(1)_LIBS) $$(PKG_LIBS) -lm
endef
$(foreach p,$(PLUGIN_NAMES),$(eval $(call plugin_rules,$(p))))
PLUGINS_SO := $(PLUGIN_NAMES:%=$(B)/plugins/%.so)
plugins: $(PLUGINS_SO)
.PHONY: plugins

# ---- tests ----
# Unit tests: tests/unit/test_<module>.c, one cmocka binary each, linked with the
# daemon's objects (not main) and, for plugin tests, the fake host.
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(B)/tests/%)
TEST_SUPPORT_OBJ := $(patsubst %.c,$(B)/obj/%.o,$(filter-out $(UNIT_SRC),$(wildcard tests/unit/*.c)))
TEST_PLUGINS_SRC := $(wildcard tests/plugins/*.c)
TEST_PLUGINS_SO := $(TEST_PLUGINS_SRC:tests/plugins/%.c=$(B)/tests/plugins/%.so)

$(B)/tests/test_%: $(B)/obj/tests/unit/test_%.o $(TEST_SUPPORT_OBJ) $(DAEMON_LIB_OBJ) $(B)/libsccommon.a
	@mkdir -p $(dir $@)
	$(CC) $(BASE_LDFLAGS) $(TEST_LDFLAGS) -rdynamic -o $@ $^ $(PKG_LIBS) $(CMOCKA_LIBS) -ldl -lpthread -lm
# test_tail appends a burst from inside the tail's read-lock, as intake would meanwhile.
$(B)/tests/test_tail: TEST_LDFLAGS := -Wl,--wrap=pthread_rwlock_rdlock

$(B)/tests/plugins/%.so: $(B)/obj/tests/plugins/%.o $(B)/libsccommon.a
	@mkdir -p $(dir $@)
	$(CC) $(BASE_LDFLAGS) -shared -Wl,--exclude-libs,ALL -o $@ $^ $(PKG_LIBS)
$(TEST_PLUGINS_SRC:%.c=$(B)/obj/%.o): EXTRA_CFLAGS := -fvisibility=hidden

# bench/bench.mk and tests/fuzz/fuzz.mk add the load generator and the fuzz targets.
-include bench/bench.mk
-include tests/fuzz/fuzz.mk

test: all $(UNIT_BIN) $(TEST_PLUGINS_SO)
	@SC_BUILD=$(CURDIR)/$(B) scripts/run-tests $(TESTS)

run: all
	@scripts/run-dev

bench: all
	@scripts/run-bench

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR)/safecampus/plugins \
	    $(DESTDIR)$(DATADIR)/safecampus/sql $(DESTDIR)$(SYSCONFDIR)/safecampus \
	    $(DESTDIR)$(UNITDIR) $(DESTDIR)$(PREFIX)/include/safecampus
	install -m 755 $(B)/safecampusd $(B)/safecampusctl $(DESTDIR)$(BINDIR)/
	install -m 644 $(PLUGINS_SO) $(DESTDIR)$(LIBDIR)/safecampus/plugins/
	install -m 644 include/safecampus/*.h $(DESTDIR)$(PREFIX)/include/safecampus/
	install -d $(DESTDIR)$(DATADIR)/safecampus/sql/core
	install -m 644 $(CORE_SQL) $(DESTDIR)$(DATADIR)/safecampus/sql/core/
	for p in $(PLUGIN_NAMES); do \
	    install -d $(DESTDIR)$(DATADIR)/safecampus/sql/$$p; \
	    if ls plugins/$$p/sql/*.sql >/dev/null 2>&1; then \
	        install -m 644 plugins/$$p/sql/*.sql $(DESTDIR)$(DATADIR)/safecampus/sql/$$p/; fi; \
	done
	sed -e 's|"build/plugins"|"$(LIBDIR)/safecampus/plugins"|' config/safecampusd.conf \
	    > $(DESTDIR)$(SYSCONFDIR)/safecampus/safecampusd.conf.sample
	test -e $(DESTDIR)$(SYSCONFDIR)/safecampus/safecampusd.conf || \
	    install -m 640 $(DESTDIR)$(SYSCONFDIR)/safecampus/safecampusd.conf.sample \
	        $(DESTDIR)$(SYSCONFDIR)/safecampus/safecampusd.conf
	sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
	    scripts/safecampusd.service > $(DESTDIR)$(UNITDIR)/safecampusd.service

clean:
	rm -rf $(B)

distclean: clean
	rm -rf .pg

-include $(shell find $(B)/obj -name '*.d' 2>/dev/null)
