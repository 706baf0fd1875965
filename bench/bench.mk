# bench/bench.mk: the load generator, the reference inserter and the report behind `make bench`.
# Included by the Makefile; scripts/run-bench runs them against a throwaway cluster.
BENCH_BIN := $(B)/bench/loadgen $(B)/bench/refinsert $(B)/bench/report
BENCH_COMMON_OBJ := $(B)/obj/bench/common.o $(B)/obj/bench/cpu.o

$(BENCH_BIN): $(B)/bench/%: $(B)/obj/bench/%.o $(BENCH_COMMON_OBJ) $(B)/libsccommon.a
	@mkdir -p $(dir $@)
	$(CC) $(BASE_LDFLAGS) -o $@ $^ $(PKG_LIBS) -lpthread

bench: $(BENCH_BIN)
