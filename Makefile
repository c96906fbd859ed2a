# clipd build. `make run` and `make test` work on a fresh Debian/Ubuntu
# machine: both install what they need first (`make deps`): Debian packages
# through apt-get when root (otherwise the exact command is printed), the
# ONNX Runtime library (checksum-verified) and the Go modules.

PYTHON ?= /usr/bin/python3
BUILD  ?= build
GO     ?= go
PREFIX ?= /usr/local
DESTDIR ?=
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)

ORT_DIR := $(BUILD)/onnxruntime
ORT_LIB := $(ORT_DIR)/libonnxruntime.so.1

# Tests and the CLI find the ONNX Runtime library and the reference data
# through these; both may be overridden from the environment.
export CLIPD_ONNXRUNTIME_LIB ?= $(abspath $(ORT_LIB))
export CLIPD_SHARED ?= $(abspath ../shared)
export CLIPD_PYTHON ?= $(PYTHON)
# go-nvml's header marks calls deprecated by NVML 13 that clipd does not
# use; its cgo build would print pages of warnings.
export CGO_CFLAGS ?= -O2 -g -Wno-deprecated-declarations

# Debian packages: cgo toolchain, libjpeg-turbo, ffmpeg (file/RTSP sources and
# test videos), PyTorch and ONNX for tools/export-clip and the demo model,
# OpenBLAS (Debian's torch otherwise runs its matrix products on the
# reference BLAS, which makes training the demo model ~30x slower), node/npm
# to fetch ONNX Runtime, systemd for checking the unit files, mosquitto and
# its clients for the MQTT tests (a real broker), openssl for their test CA,
# prometheus for promtool (the metrics test checks a real scrape with it),
# chromium for the web page's browser test.
DEBIAN_PACKAGES := gcc libc6-dev pkg-config make git ca-certificates \
	libturbojpeg0-dev ffmpeg gstreamer1.0-tools gstreamer1.0-plugins-base \
	python3-torch python3-onnx python3-numpy python3-pil libopenblas0-pthread nodejs npm systemd \
	mosquitto mosquitto-clients openssl prometheus chromium

GO_LDFLAGS := -X main.version=$(VERSION)

.PHONY: all build test test-go test-python bench soak run deps deps-system deps-go install install-config uninstall clean fuzz

all: build

deps: deps-system deps-go $(ORT_LIB)

deps-system:
	@CLIPD_DEPS="$(DEBIAN_PACKAGES)" tools/install-deps

deps-go:
	@$(GO) mod download

$(ORT_LIB):
	@tools/fetch-onnxruntime $(ORT_DIR)

build: deps
	$(GO) build $(GOFLAGS_TAGS) -ldflags "$(GO_LDFLAGS)" -o bin/clipd ./cmd/clipd
	$(GO) build -o bin/clipd-synth ./cmd/clipd-synth

# The demo: the built-in model, a synthetic camera and a labels file that
# you can edit while it runs (examples/labels/demo.labels). `bin/clipd tail
# --socket build/run/clipd.sock` in another terminal shows the same stream.
run: build
	@mkdir -p $(BUILD)/run
	bin/clipd run --config examples/demo.toml --show

# Python first: the run ends with go test's summary lines.
test: deps test-python test-go

# A skipped test fails the run when CLIPD_FAIL_ON_SKIP=1 (as in CI).
test-go:
	@mkdir -p $(BUILD)
	GO=$(GO) tools/go-test $(GOFLAGS_TAGS)

test-python:
	tools/python-test $(PYTHON)

bench: deps
	$(GO) test $(GOFLAGS_TAGS) -run '^$$' -bench . -benchmem -benchtime 2s ./...

# Ten minutes of the real daemon under churn (clients, garbage commands,
# label edits, SIGHUP), sampling RSS, goroutines, open files and the result
# rate every 30 s; fails if one drifts out of its band. Not part of `make
# test`. CLIPD_SOAK_DURATION=2m for a shorter run.
soak: deps
	$(GO) test -tags soak -run TestSoak -count 1 -v -timeout 40m ./cmd/clipd/

# Short fuzzing runs of the parsers (not part of `make test`).
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzTokenize -fuzztime 30s ./tokenizer/
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 30s ./config/
	$(GO) test -run '^$$' -fuzz FuzzRepairAndDecode -fuzztime 30s ./jpegturbo/
	$(GO) test -run '^$$' -fuzz '^FuzzFrame$$' -fuzztime 30s ./preprocess/
	$(GO) test -run '^$$' -fuzz FuzzFrameBoxes -fuzztime 30s ./preprocess/
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 30s ./labels/
	$(GO) test -run '^$$' -fuzz FuzzJPEGStream -fuzztime 30s ./capture/
	$(GO) test -run '^$$' -fuzz FuzzCommandLine -fuzztime 30s ./server/
	$(GO) test -run '^$$' -fuzz FuzzSearchRequest -fuzztime 30s ./server/
	$(GO) test -run '^$$' -fuzz FuzzSearchQuery -fuzztime 30s ./web/
	$(GO) test -run '^$$' -fuzz FuzzTracker -fuzztime 30s ./state/
	$(GO) test -run '^$$' -fuzz FuzzOwnedConfig -fuzztime 30s ./mqtt/
	$(GO) test -run '^$$' -fuzz FuzzSegment -fuzztime 30s ./history/
	$(GO) test -run '^$$' -fuzz FuzzDecodeSegment -fuzztime 30s ./promptcache/
	$(GO) test -run '^$$' -fuzz FuzzReadModelIO -fuzztime 30s ./engine/onnxrt/

install: build install-config
	install -D -m 0755 bin/clipd $(DESTDIR)$(PREFIX)/bin/clipd
	install -D -m 0644 systemd/clipd.service $(DESTDIR)/etc/systemd/system/clipd.service
	install -D -m 0644 systemd/clipd.socket $(DESTDIR)/etc/systemd/system/clipd.socket
	install -D -m 0644 systemd/clipd.sysusers $(DESTDIR)/usr/lib/sysusers.d/clipd.conf
	install -D -m 0644 $(ORT_LIB) $(DESTDIR)$(PREFIX)/lib/clipd/libonnxruntime.so.1
	@if [ -z "$(DESTDIR)" ]; then systemd-sysusers clipd.conf && systemctl daemon-reload; \
	  echo "installed; start with: systemctl enable --now clipd"; fi

# /etc/clipd: the example config as clipd.toml (an existing one is kept),
# the example labels and the demo model beside it, where the example's
# relative paths (labels/..., models/demo) find them. Its own target so
# that tests can lay it out under a DESTDIR without building.
install-config:
	test -e $(DESTDIR)/etc/clipd/clipd.toml || install -D -m 0644 config/clipd.example.toml $(DESTDIR)/etc/clipd/clipd.toml
	install -d $(DESTDIR)/etc/clipd/labels $(DESTDIR)/etc/clipd/models
	install -m 0644 examples/labels/*.labels $(DESTDIR)/etc/clipd/labels/
	cp -r models/demo $(DESTDIR)/etc/clipd/models/

# Removes what install put in place except what may hold your work:
# /etc/clipd/clipd.toml and the label files, the state and cache
# directories (/var/lib/clipd: the prompt cache; /var/cache/clipd: TensorRT
# engines) and the clipd user.
uninstall:
	@if [ -z "$(DESTDIR)" ]; then systemctl disable --now clipd.socket clipd.service 2>/dev/null || true; fi
	rm -f $(DESTDIR)$(PREFIX)/bin/clipd
	rm -f $(DESTDIR)/etc/systemd/system/clipd.service $(DESTDIR)/etc/systemd/system/clipd.socket
	rm -f $(DESTDIR)/usr/lib/sysusers.d/clipd.conf
	rm -f $(DESTDIR)$(PREFIX)/lib/clipd/libonnxruntime.so.1
	-rmdir $(DESTDIR)$(PREFIX)/lib/clipd 2>/dev/null
	rm -rf $(DESTDIR)/etc/clipd/models/demo
	@if [ -z "$(DESTDIR)" ]; then systemctl daemon-reload; fi
	@echo "kept: $(DESTDIR)/etc/clipd (config, labels), /var/lib/clipd, /var/cache/clipd and the clipd user; remove them yourself if you want them gone"

clean:
	rm -rf bin $(BUILD)

# TENSORRT=1 (build flags) and check-trt (compile check against headers).
include trt/trt.mk
