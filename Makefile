# sshvpn — run `make` for the list of targets.
SHELL := /bin/bash
GO       ?= go
FUZZTIME ?= 30s
BIN      := bin/sshvpn

.PHONY: help build test unit integration fmt-check vet vet-cross fuzz bench clean

help: ## show this list
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build bin/sshvpn
	$(GO) build -o $(BIN) ./cmd/sshvpn

test: fmt-check vet unit integration ## everything CI runs: gofmt, vet, race unit tests, integration as root

fmt-check: ## fail on unformatted Go files
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet: vet-cross ## go vet, here and for a non-Linux target; staticcheck, pinned in tools/go.mod
	$(GO) vet ./...
	$(GO) vet -tags integration ./cmd/sshvpn/ ./bench/ ./bench/socksfwd/
	$(GO) tool -modfile=tools/go.mod staticcheck -tags integration ./...

vet-cross: ## go vet for GOOS=darwin, so the non-Linux stubs keep compiling
	GOOS=darwin $(GO) vet ./relay/... ./kernel/... ./stack/...

unit: ## unit tests (and root-only kernel tests) under the race detector, three times over to catch flaky ones; replays the fuzz seed corpus and checks the import graph
	$(GO) test -race -count=3 ./...

integration: ## end-to-end tests against stock OpenSSH 9.2 and 10.0 in network namespaces (root)
	$(GO) test -tags integration -count=1 -timeout 20m -v ./cmd/sshvpn/ ./bench/delaylink/ ./bench/socksfwd/ 2>&1 | tee integration.log | grep -E '^(=== RUN|--- |\s+---|PASS|FAIL|ok|panic)|_test.go:' ; exit $${PIPESTATUS[0]}

fuzz: ## run each fuzz target for FUZZTIME
	$(GO) test -run '^$$' -fuzz '^FuzzSplitL3$$' -fuzztime $(FUZZTIME) ./relay/wire/
	$(GO) test -run '^$$' -fuzz '^FuzzSplitL2$$' -fuzztime $(FUZZTIME) ./relay/wire/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeL3$$' -fuzztime $(FUZZTIME) ./relay/wire/
	$(GO) test -run '^$$' -fuzz '^FuzzParseOpenRequest$$' -fuzztime $(FUZZTIME) ./relay/wire/
	$(GO) test -run '^$$' -fuzz '^FuzzNextFrame$$' -fuzztime $(FUZZTIME) ./relay/wire/
	$(GO) test -run '^$$' -fuzz '^FuzzParseTunnelConfig$$' -fuzztime $(FUZZTIME) ./relay/wire/
	$(GO) test -run '^$$' -fuzz '^FuzzResolve$$' -fuzztime $(FUZZTIME) ./relay/sshclient/
	$(GO) test -run '^$$' -fuzz '^FuzzKnownHostsLine$$' -fuzztime $(FUZZTIME) ./relay/sshclient/
	$(GO) test -run '^$$' -fuzz '^FuzzHandle$$' -fuzztime $(FUZZTIME) ./stack/dnsproxy/
	$(GO) test -run '^$$' -fuzz '^FuzzParseRule$$' -fuzztime $(FUZZTIME) ./stack/egress/
	$(GO) test -run '^$$' -fuzz '^FuzzHandle$$' -fuzztime $(FUZZTIME) ./stack/dhcpd/
	$(GO) test -run '^$$' -fuzz '^FuzzWrite$$' -fuzztime $(FUZZTIME) ./stack/segment/
	$(GO) test -run '^$$' -fuzz '^FuzzSplit$$' -fuzztime $(FUZZTIME) ./relay/offload/
	$(GO) test -run '^$$' -fuzz '^FuzzCoalesce$$' -fuzztime $(FUZZTIME) ./relay/offload/
	$(GO) test -run '^$$' -fuzz '^FuzzPlainCoalesce$$' -fuzztime $(FUZZTIME) ./relay/offload/
	$(GO) test -run '^$$' -fuzz '^FuzzSOCKSRequest$$' -fuzztime $(FUZZTIME) ./proxy/
	$(GO) test -run '^$$' -fuzz '^FuzzUDPHeader$$' -fuzztime $(FUZZTIME) ./proxy/

bench: ## micro-benchmarks, then the comparison harness in namespaces (root; BENCH=quick|full, see bench/README.md)
	@start=$$SECONDS; \
	$(GO) test -run '^$$' -bench . -benchmem ./relay/... ./kernel/ && \
	$(GO) test -tags integration -run '^$$' -bench '^BenchmarkPaths$$' -benchtime 1x -timeout 30m ./bench/; \
	code=$$?; echo "make bench: $$((SECONDS - start)) s wall"; exit $$code

clean: ## remove build output
	rm -rf bin integration.log
