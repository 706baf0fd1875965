# bench/bench.mk: the load generator, the reference inserter and the report behind `make bench`.
# Included by the Makefile; scripts/run-bench runs them against a throwaway cluster.
BENCH_BIN := $(B)/bench/loadgen $(B)/bench/refinsert $(B)/bench/report
BENCH_COMMON_OBJ := $(B)/obj/bench/common.o $(B)/obj/bench/cpu.o

$(BENCH_BIN): $(B)/bench/%: $(B)/obj/bench/%.o $(BENCH_COMMON_OBJ) $(B)/libsccommon.a
	@mkdir -p $(dir $@)
	$(CC) $(BASE_LDFLAGS) -o $@ $(filter %.o,$^) $(filter %.a,$^) $(PKG_LIBS) -lpthread

# refinsert journals an event alone with the daemon's own code; loadgen reads the daemon's
# latency histograms as the daemon does.
$(B)/bench/refinsert: $(B)/obj/daemon/journal.o
$(B)/bench/loadgen: $(B)/obj/daemon/hist.o

bench: $(BENCH_BIN)
