# TensorRT backend fragment, included by the top-level Makefile.
#
#   make TENSORRT=1 build        build clipd with the TensorRT backend
#   make check-trt               compile the shim and the tagged Go package
#                                against TensorRT headers, without linking
#
# TRT_INCLUDE, ONNXPARSER_INCLUDE and CUDA_INCLUDE locate the headers. The
# defaults suit JetPack and NVIDIA's Ubuntu packages; check-trt falls back
# to headers fetched into .cache/trt-headers and to the CUDA stub in
# trt/internal/cudastub, which declares only what the shim uses and is NOT
# for building binaries.

TRT_INCLUDE        ?= /usr/include/$(shell gcc -dumpmachine)
ONNXPARSER_INCLUDE ?= $(TRT_INCLUDE)
CUDA_INCLUDE       ?= /usr/local/cuda/include
CUDA_LIB           ?= /usr/local/cuda/lib64
TRT_LIB            ?= /usr/lib/$(shell gcc -dumpmachine)

ifeq ($(TENSORRT),1)
GO_TAGS += tensorrt
export CGO_ENABLED := 1
export CGO_CPPFLAGS += -I$(TRT_INCLUDE) -I$(ONNXPARSER_INCLUDE) -I$(CUDA_INCLUDE)
export CGO_LDFLAGS  += -L$(TRT_LIB) -L$(CUDA_LIB)
GOFLAGS_TAGS := -tags '$(GO_TAGS)'
endif

TRT_HEADER_CACHE ?= .cache/trt-headers
CUDA_STUB        := trt/internal/cudastub

# One check: g++ syntax check of the shim with warnings as errors (TensorRT
# deprecations excepted: 10.12+ deprecates the weakly typed FP16 API that
# 8.5/8.6 require), then go vet and go build of the tagged package (cgo
# compiles shim.cpp; the link of cgo's probe binary may fail without the
# libraries, which go build tolerates for non-main packages).
define trt_check
	@echo "== check-trt: $(1) + $(2)"
	g++ -std=c++17 -fsyntax-only -Wall -Wextra -Werror -Wno-error=deprecated-declarations \
		-isystem $(2) -isystem $(1) -isystem $(3) trt/shim.cpp
	CGO_ENABLED=1 CGO_CPPFLAGS="-isystem $(abspath $(2)) -isystem $(abspath $(1)) -isystem $(abspath $(3))" \
		$(GO) vet -tags tensorrt ./trt/
	CGO_ENABLED=1 CGO_CPPFLAGS="-isystem $(abspath $(2)) -isystem $(abspath $(1)) -isystem $(abspath $(3))" \
		$(GO) build -tags tensorrt -o /dev/null ./trt/
endef

.PHONY: check-trt check-trt-matrix check-trt-ops trt-headers

# check-trt uses the given headers when NvInfer.h is there, else the
# whole fetched matrix.
check-trt:
ifneq ($(wildcard $(TRT_INCLUDE)/NvInfer.h),)
	$(call trt_check,$(TRT_INCLUDE),$(ONNXPARSER_INCLUDE),$(if $(wildcard $(CUDA_INCLUDE)/cuda_runtime_api.h),$(CUDA_INCLUDE),$(CUDA_STUB)))
else
	@$(MAKE) --no-print-directory check-trt-matrix
endif

# TensorRT 8.5 (JetPack 5.1), 8.6 (JetPack 6.0), 10.3 and 10.16, with the
# ONNX parser header of the matching onnx-tensorrt branch (10.16 ships its
# own; for 10.3 the newest branch in the snapshot was 10.1-GA).
check-trt-matrix: trt-headers check-trt-ops
	$(call trt_check,$(TRT_HEADER_CACHE)/trt-8.5.3/include,$(TRT_HEADER_CACHE)/onnxparser-8.5-GA,$(CUDA_STUB))
	$(call trt_check,$(TRT_HEADER_CACHE)/trt-v8.6.1/include,$(TRT_HEADER_CACHE)/onnxparser-8.6-GA,$(CUDA_STUB))
	$(call trt_check,$(TRT_HEADER_CACHE)/trt-v10.3.0/include,$(TRT_HEADER_CACHE)/onnxparser-10.1-GA,$(CUDA_STUB))
	$(call trt_check,$(TRT_HEADER_CACHE)/trt-v10.16/include,$(TRT_HEADER_CACHE)/trt-v10.16/include,$(CUDA_STUB))

# The exported graphs against each parser branch's operator matrix
# (docs/operators.md; tools/check-trt-ops): the ViT and ModifiedResNet
# reference checkpoints at opsets 16 and 17, and the demo model. TensorRT
# 8.5 has no LayerNormalization, so it is given the opset-16 exports only;
# 10.3 and 10.16 are checked against 10.1-GA's matrix, the newest branch
# in the snapshot.
TRT_OPS_DIR := $(BUILD)/check-trt-ops
TRT_OPS_16  := $(foreach m,tiny-vit tiny-rn,$(TRT_OPS_DIR)/$(m)-16/visual/model.onnx $(TRT_OPS_DIR)/$(m)-16/textual/model.onnx)
TRT_OPS_17  := $(subst -16/,-17/,$(TRT_OPS_16)) models/demo/visual/model.onnx models/demo/textual/model.onnx
check-trt-ops: trt-headers
	@set -e; for m in tiny-vit tiny-rn; do for o in 16 17; do \
		ck=$(CLIPD_SHARED)/$$([ $$m = tiny-rn ] && echo reference-rn || echo reference)/model/$$m-state.pt; \
		$(PYTHON) tools/export-clip $$ck $(TRT_OPS_DIR)/$$m-$$o --opset $$o --force \
			--vocab $(CLIPD_SHARED)/clip/bpe_simple_vocab_16e6.txt.gz 2>/dev/null; done; done
	$(PYTHON) tools/check-trt-ops $(TRT_HEADER_CACHE)/onnxparser-8.5-GA/docs/operators.md $(TRT_OPS_16)
	$(PYTHON) tools/check-trt-ops $(TRT_HEADER_CACHE)/onnxparser-8.6-GA/docs/operators.md $(TRT_OPS_16) $(TRT_OPS_17)
	$(PYTHON) tools/check-trt-ops $(TRT_HEADER_CACHE)/onnxparser-10.1-GA/docs/operators.md $(TRT_OPS_16) $(TRT_OPS_17)

# Extracts headers from git mirrors of NVIDIA/TensorRT and onnx/onnx-tensorrt
# (TRT_GIT, ONNXTRT_GIT: git directories, e.g. bare clones).
TRT_GIT     ?= /work/.mirror/NVIDIA+TensorRT/repo
ONNXTRT_GIT ?= /work/.mirror/onnx+onnx-tensorrt/repo
trt-headers:
	@set -e; for t in 8.5.3 v8.6.1 v10.3.0 v10.16; do \
		d=$(TRT_HEADER_CACHE)/trt-$$t; [ -f $$d/include/NvInfer.h ] && continue; \
		mkdir -p $$d; git --git-dir=$(TRT_GIT) archive $$t include | tar -x -C $$d; done
	@set -e; for b in 8.5-GA 8.6-GA 10.1-GA; do \
		d=$(TRT_HEADER_CACHE)/onnxparser-$$b; [ -f $$d/NvOnnxParser.h ] && [ -f $$d/docs/operators.md ] && continue; \
		mkdir -p $$d; git --git-dir=$(ONNXTRT_GIT) archive $$b NvOnnxParser.h docs/operators.md | tar -x -C $$d; done
