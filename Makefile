# imgedge — every entry point. On a fresh Debian machine with Go (as root):
#   make run    set up, then serve on 127.0.0.1:50051 with the local store in ./data
#   make test   set up, then run every check and test
SHELL := /bin/bash
.DEFAULT_GOAL := help

BIN := $(CURDIR)/.bin
export PATH := $(BIN):$(PATH)
export IMGEDGE_VERSITYGW := $(BIN)/versitygw

# libvips: the build sharp ships on the npm registry (libvips 8.18.7 with
# mozjpeg, libwebp, libheif + aom, cgif and highway, one self-contained
# shared library) with its headers. Every cgo build here finds it through
# PKG_CONFIG_PATH; the binaries find it through their rpath.
SHARP_LIBVIPS_VERSION := 1.3.4
VIPS_DIR := $(BIN)/libvips
VIPS_NPM := $(VIPS_DIR)/npm/node_modules/@img
export PKG_CONFIG_PATH := $(VIPS_DIR)/pkgconfig
# Part of every cgo build's cache key: objects compiled against another
# libvips's headers are never reused.
export CGO_CFLAGS := -O2 -g -DIMGEDGE_SHARP_LIBVIPS=$(subst .,_,$(SHARP_LIBVIPS_VERSION))

# SSIMULACRA2's inner loops have 8-lane AVX2 versions (server/internal/
# quality/kernels_simd.go) behind Go's SIMD experiment; without it the same
# package builds its scalar loops, 2.5× slower.
export GOEXPERIMENT := simd

# Pinned tools, installed into .bin by `make tools`.
VERSITYGW_VERSION := v1.8.0
BUF_VERSION       := v1.75.0
GRPCURL_VERSION   := v1.9.4
GOLANGCI_LINT_VERSION := v2.15.0

DATA ?= ./data

.PHONY: help setup deps apt-deps tools grpcurl run dev test check lint checkgenerate generate proto-baseline light unit-race edge-binary edge-zip edge-test bench bench-peers savings fuzz clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

setup: deps tools ## install everything the build and tests need

deps: apt-deps $(VIPS_DIR)/pkgconfig/vips.pc ## install libvips (sharp's build) and, with apt when missing, pkg-config, gcc, node, npm, zip and the libvips tools

apt-deps:
	@missing=; for c in pkg-config gcc g++ node npm zip curl vips; do command -v $$c >/dev/null || missing="$$missing $$c"; done; \
	if [ -z "$$missing" ]; then \
		echo "pkg-config, gcc, node $$(node --version), npm, zip, curl and the libvips tools already installed"; \
	else \
		echo "missing:$$missing; installing pkg-config, gcc, nodejs, npm, zip and libvips-tools with apt"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			pkg-config gcc g++ libc6-dev zip curl libvips-tools $$(command -v node >/dev/null || echo nodejs) \
			$$(command -v npm >/dev/null || echo npm) >/dev/null; \
	fi

# The reference-score test rebuilds its encodes with Debian's libvips tools
# (as the reference scores were made); the service links sharp's libvips.
$(VIPS_DIR)/pkgconfig/vips.pc: | apt-deps
	@mkdir -p $(VIPS_DIR)/npm $(VIPS_DIR)/pkgconfig $(VIPS_DIR)/compat/vips
	npm install --silent --no-audit --no-fund --prefix $(VIPS_DIR)/npm \
		@img/sharp-libvips-linux-x64@$(SHARP_LIBVIPS_VERSION) @img/sharp-libvips-dev@$(SHARP_LIBVIPS_VERSION)
	printf '%s\n' '/* sharp'"'"'s libvips has no vips7 layer; bimg includes this header for one name. */' \
		'#define im__print_all vips_object_print_all' > $(VIPS_DIR)/compat/vips/vips7compat.h
	lib=$(VIPS_NPM)/sharp-libvips-linux-x64/lib; inc=$(VIPS_NPM)/sharp-libvips-dev/include; \
	so=$$(cd $$lib && ls libvips-cpp.so.*); ver=$${so#libvips-cpp.so.}; \
	printf '%s\n' "Name: vips" "Description: libvips as sharp ships it" "Version: $$ver" \
		"Libs: -L$$lib -l:$$so -Wl,-rpath,$$lib" \
		"Cflags: -DIMGEDGE_VIPS_NO_MAGICK -I$(VIPS_DIR)/compat -I$$inc -I$$inc/glib-2.0 -I$$lib/glib-2.0/include" > $@.tmp
	mv $@.tmp $@
	@echo "libvips $$(pkg-config --modversion vips) from @img/sharp-libvips-linux-x64@$(SHARP_LIBVIPS_VERSION)"

tools: deps $(BIN)/versitygw $(BIN)/buf $(BIN)/grpcurl $(BIN)/golangci-lint ## install the pinned tools into .bin

grpcurl: $(BIN)/grpcurl ## install grpcurl for the README's tour (compiled once from source: a few minutes)

$(BIN)/versitygw:
	GOBIN=$(BIN) go install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION)
# buf is published on npm with its prebuilt binaries: seconds, not a
# 19-minute compile. versitygw and grpcurl have no prebuilt package in the
# registries this project uses, so they are compiled once and kept in .bin.
$(BIN)/buf: | apt-deps
	@mkdir -p $(BIN)/npm
	npm install --silent --no-audit --no-fund --prefix $(BIN)/npm @bufbuild/buf@$(patsubst v%,%,$(BUF_VERSION))
	ln -sf npm/node_modules/.bin/buf $(BIN)/buf
$(BIN)/grpcurl:
	GOBIN=$(BIN) go install github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION)
$(BIN)/golangci-lint:
	GOBIN=$(BIN) go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

run: deps ## serve on the embedded local store (./data), seeded with the sample images (needs no tools)
	@mkdir -p $(DATA)/demo/photos
	@cp -n deploy/dev/samples/photos/* $(DATA)/demo/photos/ 2>/dev/null || true
	go run ./server --store file:$(DATA)

dev: setup ## local stack: versitygw + server + edge HTTP simulation, seeded; Ctrl-C stops it
	bash deploy/dev/run.sh

test: setup check ## run every check and the whole test suite
	go test -count=1 ./...
	cd deploy && go test -count=1 ./...
	$(MAKE) --no-print-directory unit-race edge-test

check: lint checkgenerate light ## static checks: formatting, vet, buf lint, generated code, pure-Go build

lint: $(BIN)/golangci-lint $(BIN)/buf
	@command -v cfn-lint >/dev/null || echo "note: cfn-lint is not installed (pip install cfn-lint); the CloudFormation templates get the structural checks only"
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go vet ./... && go vet -tags report ./server/e2e
	golangci-lint run ./... && golangci-lint run --build-tags report ./server/e2e
	cd deploy && go vet ./... && golangci-lint run ./...
	cd proto && buf format -d --exit-code && buf lint
	@# The API's compatibility: against the last released image (proto-baseline).
	cd proto && buf breaking --against baseline/imgedge-v1.binpb

GENERATED := proto deploy/cloudformation

generate: $(BIN)/buf ## regenerate the protobuf Go code and the viewer-request function (from the edge's allow-lists)
	cd proto && buf generate && buf build -o imgedge/v1/imgedge.binpb
	go run ./edgeadapter/cmd/imgedge-gen-viewer --js deploy/cloudformation/viewer-request.js --template deploy/cloudformation/template.yaml

proto-baseline: $(BIN)/buf ## at a release: freeze the API that buf breaking compares against
	cd proto && buf build -o baseline/imgedge-v1.binpb

checkgenerate: generate ## fail if the checked-in generated code is stale
	@git diff --exit-code -- $(GENERATED) || { echo "generated code is stale: run make generate and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- $(GENERATED))" || { git status --porcelain -- $(GENERATED); echo "untracked generated files"; exit 1; }

light: ## the client and the edge adapter build without cgo
	CGO_ENABLED=0 go build ./client/... ./proto/... ./edgeadapter/...

unit-race: ## the concurrent pure-Go packages under the race detector
	go test -count=1 -race ./server/internal/transform/... ./server/internal/workpool/... ./client/... ./edgeadapter/...

# --- the edge adapter's Lambda@Edge package
EDGE_CONFIG ?= edgeadapter/lambda/config.example.json
EDGE_DIST   := dist/lambda

edge-binary: ## the adapter as a static linux/amd64 binary (Lambda@Edge is x86_64 only)
	@mkdir -p $(EDGE_DIST)
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath -ldflags="-s -w" -o $(EDGE_DIST)/imgedge-edge ./edgeadapter/cmd/imgedge-edge

edge-zip: edge-binary ## the deployable zip: launcher + binary + config (EDGE_CONFIG=your.json)
	go run ./edgeadapter/cmd/imgedge-edge --config $(EDGE_CONFIG) --check
	cp edgeadapter/lambda/index.js $(EDGE_DIST)/index.js
	cp $(EDGE_CONFIG) $(EDGE_DIST)/config.json
	rm -f dist/imgedge-edge.zip
	cd $(EDGE_DIST) && zip -q -X -9 ../imgedge-edge.zip index.js imgedge-edge config.json
	@size=$$(stat -c %s dist/imgedge-edge.zip); \
		echo "dist/imgedge-edge.zip: $$((size / 1024)) KiB (Lambda@Edge origin-request limit: 50 MiB zipped)"; \
		test $$size -lt $$((50 * 1024 * 1024))

edge-test: edge-binary ## the Node.js launcher's tests against the real adapter binary
	cd edgeadapter/lambda && IMGEDGE_EDGE_BIN=$(CURDIR)/$(EDGE_DIST)/imgedge-edge node --test
	cd deploy/cloudformation && node --test

bench: setup ## the benchmark report: every service path against in-process libvips (BENCHMARKS.md)
	@mkdir -p dist
	IMGEDGE_BENCH=1 IMGEDGE_BENCH_OUT=$(CURDIR)/dist/bench-table.md \
		go test -tags report ./server/e2e -run '^TestBenchmarkReport$$' -count=1 -v -timeout 40m
	@echo "table written to dist/bench-table.md"

SHARP_VERSION := 0.35.5

bench-peers: deps ## the engine against sharp (npm, pinned) on the benchmark's jobs, same run, interleaved
	@mkdir -p dist $(BIN)/sharp
	@test -d $(BIN)/sharp/node_modules/sharp || npm install --silent --no-audit --no-fund --prefix $(BIN)/sharp sharp@$(SHARP_VERSION)
	IMGEDGE_SHARP=$(BIN)/sharp IMGEDGE_BENCH_OUT=$(CURDIR)/dist/peer-bench.md \
		go test -tags report ./server/e2e -run '^TestPeerBenchmark$$' -count=1 -v -timeout 20m
	@echo "table written to dist/peer-bench.md"

CORPUS ?=

savings: deps ## the savings table on the shipped samples (CORPUS=dir adds that directory's JPEGs)
	@mkdir -p dist
	IMGEDGE_SAVINGS=1 IMGEDGE_CORPUS=$(abspath $(CORPUS)) IMGEDGE_SAVINGS_OUT=$(CURDIR)/dist/savings-table.md go test -tags report ./server/e2e -run '^TestSavingsReport$$' -count=1 -v -timeout 30m
	@echo "table written to dist/savings-table.md"

fuzz: ## run each fuzz target for a while (FUZZTIME=30s), then every shape × format × spec through libvips
	go test ./client/variant -run '^$$' -fuzz FuzzParseKey -fuzztime $${FUZZTIME:-30s}
	go test ./client/variant -run '^$$' -fuzz FuzzParseCanonical -fuzztime $${FUZZTIME:-30s}
	go test ./client/variant -run '^$$' -fuzz FuzzParseAccept -fuzztime $${FUZZTIME:-30s}
	go test ./edgeadapter -run '^$$' -fuzz FuzzURIAndQuery -fuzztime $${FUZZTIME:-30s}
	go test ./server/internal/quality -run '^$$' -fuzz FuzzEstimateJPEGQuality -fuzztime $${FUZZTIME:-30s}
	go test ./server/internal/jpegscan -run '^$$' -fuzz FuzzRead -fuzztime $${FUZZTIME:-30s}
	go test ./server/internal/imaging -run '^$$' -fuzz FuzzProcessShapes -fuzztime $${FUZZTIME:-30s}
	go test ./server/internal/imaging -run '^$$' -fuzz FuzzDecode -fuzztime $${FUZZTIME:-30s}
	go test ./server/internal/imaging -run '^$$' -fuzz FuzzAPNGFrames -fuzztime $${FUZZTIME:-30s}
	go test ./server/internal/imaging -run '^$$' -fuzz FuzzGIFFrames -fuzztime $${FUZZTIME:-30s}
	go test ./server/internal/imaging -run '^$$' -fuzz FuzzCoding -fuzztime $${FUZZTIME:-30s}
	go test ./server/internal/imaging -run '^$$' -fuzz FuzzHEIF -fuzztime $${FUZZTIME:-30s}
	go test ./server/internal/imaging -run '^$$' -fuzz FuzzPNGTextSize -fuzztime $${FUZZTIME:-30s}
	go test ./server/internal/imaging -run '^$$' -fuzz FuzzWebPChunks -fuzztime $${FUZZTIME:-30s}
	go test ./server/internal/iccprofile -run '^$$' -fuzz FuzzRead -fuzztime $${FUZZTIME:-30s}
	go test ./server/internal/vp8l -run '^$$' -fuzz FuzzRead -fuzztime $${FUZZTIME:-30s}
	IMGEDGE_SHAPE_SWEEP_FULL=1 go test ./server/internal/imaging -run '^TestExtremeShapes$$' -count=1 -timeout 60m

clean: ## remove build outputs and tools (never ./data, which holds your originals)
	rm -rf $(BIN) dist
