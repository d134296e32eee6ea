# strata build. `make` builds the command, the libraries and the tools;
# `make test` runs every test under AddressSanitizer + UBSan; `make fuzz`
# runs the GGUF reader fuzzer (clang); `make bench` runs the benchmarks.

CC      ?= cc
PREFIX  ?= /usr/local
BUILD   ?= build
FUZZ_SECONDS ?= 60

JANSSON_CFLAGS := $(shell pkg-config --cflags jansson 2>/dev/null)
JANSSON_LIBS   := $(shell pkg-config --libs jansson 2>/dev/null || echo -ljansson)
# HTTP for `strata serve` (libmicrohttpd-dev): its header at build time; the
# library is loaded when the server starts (src/serve/mhd.h says why)
MHD_CFLAGS := $(shell pkg-config --cflags libmicrohttpd 2>/dev/null)

WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-unused-parameter
CPPFLAGS += -Iinclude -Isrc -D_GNU_SOURCE $(JANSSON_CFLAGS) $(MHD_CFLAGS)
CFLAGS   ?= -O2 -g
BASEFLAGS := -std=c17 $(WARN) -fPIC -pthread
LDLIBS   := $(JANSSON_LIBS) -lm -pthread -ldl
SANFLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

# Files named *_avx2.c / *_avx512.c hold SIMD kernels chosen at run time;
# only they are compiled with those instruction sets enabled.
SIMD_avx2   := -mavx2 -mfma -mf16c
SIMD_avx512 := -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mfma -mf16c
simd_flags = $(if $(findstring _avx512.c,$<),$(SIMD_avx512),$(if $(findstring _avx2.c,$<),$(SIMD_avx2),))

LIB_SRC   := $(sort $(shell find src -name '*.c' -not -path 'src/cli/*'))
CLI_SRC   := $(sort $(wildcard src/cli/*.c))
SYNTH_SRC := $(sort $(wildcard tools/synth/*.c))
TEST_SRC  := $(sort $(wildcard tests/*.c))
HEADERS   := $(shell find include src tests tools -name '*.h')

LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ   := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
SYNTH_OBJ := $(SYNTH_SRC:%.c=$(BUILD)/obj/%.o)
ASAN_LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/asan/%.o)
ASAN_CLI_OBJ  := $(filter-out %/main.o,$(CLI_SRC:%.c=$(BUILD)/asan/%.o))
ASAN_SYNTH_OBJ:= $(filter-out %/main.o,$(SYNTH_SRC:%.c=$(BUILD)/asan/%.o))
ASAN_TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/asan/%.o)

# GPU shaders (src/backend/vulkan/shaders): glslc compiles each *.comp to
# SPIR-V in $(BUILD)/shaders; those that reduce over a workgroup (they
# include reduce.glsl or mm_main.glsl) also get a subgroup-arithmetic variant
# in $(BUILD)/shaders/sg (-DUSE_SUBGROUP).
# embed_spirv.sh writes them all as word arrays into one generated C file,
# compiled into libstrata like any library source (release, ASan, fuzz).
VK_DIR      := src/backend/vulkan/shaders
VK_COMP     := $(sort $(wildcard $(VK_DIR)/*.comp))
VK_GLSL     := $(wildcard $(VK_DIR)/*.glsl)
VK_SG_COMP  := $(sort $(shell grep -lE '"(reduce|mm_main)\.glsl"' $(VK_COMP) /dev/null))
VK_SPV      := $(VK_COMP:$(VK_DIR)/%.comp=$(BUILD)/shaders/%.spv) \
               $(VK_SG_COMP:$(VK_DIR)/%.comp=$(BUILD)/shaders/sg/%.spv)
VK_GEN      := $(BUILD)/gen/vk_shaders.c
GLSLC_FLAGS := --target-env=vulkan1.2 --target-spv=spv1.5 -O -Werror
GLSLC_CHECK := command -v glslc >/dev/null || { echo "glslc not found: install the Debian package glslc" >&2; exit 1; }
LIB_OBJ      += $(BUILD)/obj/gen/vk_shaders.o
ASAN_LIB_OBJ += $(BUILD)/asan/gen/vk_shaders.o

$(BUILD)/shaders/%.spv: $(VK_DIR)/%.comp $(VK_GLSL)
	@$(GLSLC_CHECK)
	@mkdir -p $(dir $@)
	glslc $(GLSLC_FLAGS) $< -o $@

$(BUILD)/shaders/sg/%.spv: $(VK_DIR)/%.comp $(VK_GLSL)
	@$(GLSLC_CHECK)
	@mkdir -p $(dir $@)
	glslc $(GLSLC_FLAGS) -DUSE_SUBGROUP $< -o $@

$(VK_GEN): $(VK_SPV) src/backend/vulkan/embed_spirv.sh
	@mkdir -p $(dir $@)
	sh src/backend/vulkan/embed_spirv.sh $@ $(VK_SPV)

$(BUILD)/obj/gen/vk_shaders.o: $(VK_GEN) $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(BASEFLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/asan/gen/vk_shaders.o: $(VK_GEN) $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(BASEFLAGS) $(SANFLAGS) -c $< -o $@

$(BUILD)/fuzz/gen/vk_shaders.o: $(VK_GEN) $(HEADERS)
	@mkdir -p $(dir $@)
	clang $(CPPFLAGS) $(BASEFLAGS) $(FUZZFLAGS) -c $< -o $@

STRATA   := $(BUILD)/strata
SYNTH    := $(BUILD)/strata-synth
LIBA     := $(BUILD)/libstrata.a
LIBSO    := $(BUILD)/libstrata.so
PCFILE   := $(BUILD)/strata.pc
TESTBIN  := $(BUILD)/asan/strata-tests
# The CLI and generator built with sanitizers, for tests that run them.
ASAN_STRATA := $(BUILD)/asan/strata
ASAN_SYNTH  := $(BUILD)/asan/strata-synth

.PHONY: all test fuzz bench bench-gpu bench-moe bench-batch demo deps install clean FORCE
all: $(STRATA) $(SYNTH) $(LIBA) $(LIBSO) $(PCFILE)

$(BUILD)/obj/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(BASEFLAGS) $(CFLAGS) $(simd_flags) -c $< -o $@

$(BUILD)/asan/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(BASEFLAGS) $(SANFLAGS) $(simd_flags) -c $< -o $@

$(LIBA): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(LIBSO): $(LIB_OBJ)
	$(CC) -shared -Wl,-soname,libstrata.so.0 -o $@ $^ $(LDLIBS)

$(STRATA): $(CLI_OBJ) $(LIBA)
	$(CC) $(CFLAGS) -o $@ $(CLI_OBJ) $(LIBA) $(LDLIBS)

$(SYNTH): $(SYNTH_OBJ) $(LIBA)
	$(CC) $(CFLAGS) -o $@ $(SYNTH_OBJ) $(LIBA) $(LDLIBS)

$(ASAN_STRATA): $(ASAN_LIB_OBJ) $(ASAN_CLI_OBJ) $(BUILD)/asan/src/cli/main.o
	$(CC) $(SANFLAGS) -o $@ $^ $(LDLIBS)

$(ASAN_SYNTH): $(ASAN_LIB_OBJ) $(ASAN_SYNTH_OBJ) $(BUILD)/asan/tools/synth/main.o
	$(CC) $(SANFLAGS) -o $@ $^ $(LDLIBS)

$(TESTBIN): $(ASAN_TEST_OBJ) $(ASAN_LIB_OBJ) $(ASAN_CLI_OBJ) $(ASAN_SYNTH_OBJ)
	$(CC) $(SANFLAGS) -o $@ $^ $(LDLIBS)

# Regenerated on every make so `make install PREFIX=...` records that prefix.
$(PCFILE): FORCE
	@mkdir -p $(BUILD)
	printf 'prefix=%s\nlibdir=$${prefix}/lib\nincludedir=$${prefix}/include\n\nName: strata\nDescription: run LLMs larger than memory\nVersion: %s\nRequires.private: jansson\nLibs: -L$${libdir} -lstrata\nLibs.private: -lm -pthread -ldl\nCflags: -I$${includedir}\n' \
	    '$(PREFIX)' "$$(sed -n 's/^#define STRATA_VERSION_STRING "\(.*\)"/\1/p' include/strata.h)" > $@

# Tests run from the repository root; they find the fixtures in
# ../shared/fixtures (or $STRATA_FIXTURES) and the sanitized binaries here.
# Memory-budget tests measure the real RSS of the release binary (the
# sanitizers' shadow memory would swamp it).
test: $(TESTBIN) $(ASAN_STRATA) $(ASAN_SYNTH) $(STRATA)
	STRATA_BIN=$(ASAN_STRATA) STRATA_SYNTH_BIN=$(ASAN_SYNTH) STRATA_RELEASE_BIN=$(STRATA) \
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	    $(TESTBIN) $(TESTS)

# Fuzz targets (tests/fuzz/fuzz_NAME.c, seeds in tests/fuzz/corpus-NAME, the
# GGUF reader's in tests/fuzz/corpus): the GGUF header path, the BPE
# pre-tokenizers, the profile and saved-plan JSON, the server's request
# bodies. `make fuzz` runs each for
# FUZZ_SECONDS.
FUZZ_NAMES := gguf pretok json openai
FUZZ_BIN  := $(FUZZ_NAMES:%=$(BUILD)/fuzz/fuzz_%)
FUZZFLAGS := -g -O1 -fsanitize=fuzzer-no-link,address,undefined
FUZZ_OBJ  := $(LIB_SRC:%.c=$(BUILD)/fuzz/%.o)
FUZZ_OBJ  += $(BUILD)/fuzz/gen/vk_shaders.o
$(BUILD)/fuzz/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	clang $(CPPFLAGS) $(BASEFLAGS) $(FUZZFLAGS) $(simd_flags) -c $< -o $@

$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_OBJ)
	clang $(CPPFLAGS) $(BASEFLAGS) -g -O1 -fsanitize=fuzzer,address,undefined -o $@ $^ $(LDLIBS)

fuzz: $(FUZZ_BIN)
	@for t in $(FUZZ_NAMES); do \
	    seeds=tests/fuzz/corpus-$$t; [ $$t = gguf ] && seeds=tests/fuzz/corpus; \
	    mkdir -p $(BUILD)/fuzz/corpus-$$t; echo "== fuzz $$t"; \
	    $(BUILD)/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
	        $(BUILD)/fuzz/corpus-$$t $$seeds || exit 1; \
	done

# The Debian packages that building, the tests (lavapipe for the GPU tests)
# and the demo need, installed with apt-get through sudo only when not root;
# the list is in tools/deps.sh, which the README runs directly (a fresh
# container has no make yet).
deps:
	@sh tools/deps.sh

# The README's main job: synthesize a model twice the budget, plan it, run it.
demo: $(STRATA) $(SYNTH)
	@BUILD=$(BUILD) sh tools/demo.sh

bench: all
	@if [ -x bench/run ]; then bench/run; else echo "no benchmarks yet"; fi

# The GPU tier: 7B- and 13B-shaped models in VRAM, split with the CPU, and
# the CPU alone, and the planner's plans against their predictions (GPU=N
# picks a device; QUICK=1: a tiny model, a smoke test).
bench-gpu: all
	@BUILD=$(BUILD) sh bench/gpu.sh

# Mixture of experts larger than memory (issue 11): a 12-layer Qwen3-30B-A3B
# shape with uniform and skewed routing at --mem 25 %, per cache policy and
# prefetch predictor, and resident against the dense model of the same
# active bytes; `make bench` runs it too unless MOE=0.
bench-moe: all
	@BUILD=$(BUILD) sh bench/moe.sh

# Many sequences (issue 13): aggregate decode tok/s of `strata batch` at
# -np 1, 4, 16, the 1B model resident and the 7B model streamed at --mem
# 25 %; `make bench` runs it too unless BATCH=0. QUICK=1: a smoke test.
bench-batch: all
	@BUILD=$(BUILD) sh bench/batch.sh

# Thread scaling (issue 14): prompt and decode tok/s of the 1B model at 1,
# 2, 4, 8 and 16 threads (up to the CPUs), decode's fraction of the RAM
# bandwidth; 2-3 minutes. MODEL=, PRESET=, TYPE=, RUNS= (bench/threads.sh).
bench-threads: all
	@BUILD=$(BUILD) sh bench/threads.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 755 $(STRATA) $(SYNTH) $(DESTDIR)$(PREFIX)/bin/
	install -m 644 $(LIBA) $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(LIBSO) $(DESTDIR)$(PREFIX)/lib/libstrata.so.0
	ln -sf libstrata.so.0 $(DESTDIR)$(PREFIX)/lib/libstrata.so
	install -m 644 include/strata.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 $(PCFILE) $(DESTDIR)$(PREFIX)/lib/pkgconfig/

clean:
	rm -rf $(BUILD)
