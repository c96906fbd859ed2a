# clipd build. `make run` and `make test` work on a fresh Debian/Ubuntu
# machine: they install what they need first (see `make deps`).

PYTHON ?= /usr/bin/python3
BUILD  ?= build
GO     ?= go

ORT_DIR := $(BUILD)/onnxruntime
ORT_LIB := $(ORT_DIR)/libonnxruntime.so.1

# Tests and the CLI find the ONNX Runtime library and the reference data
# through these; both may be overridden from the environment.
export CLIPD_ONNXRUNTIME_LIB ?= $(abspath $(ORT_LIB))
export CLIPD_SHARED ?= $(abspath ../shared)
export CLIPD_PYTHON ?= $(PYTHON)

.PHONY: all build test bench run deps deps-system clean

all: build

deps: deps-system $(ORT_LIB)

deps-system:
	@tools/install-deps

$(ORT_LIB):
	@tools/fetch-onnxruntime $(ORT_DIR)

build: deps
	$(GO) build -o bin/clipd ./cmd/clipd

test: deps
	$(GO) test ./...

bench: deps
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf bin $(BUILD)
