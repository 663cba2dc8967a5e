# sshvpn — run `make` for the list of targets.
SHELL := /bin/bash
GO       ?= go
FUZZTIME ?= 30s
BIN      ?= bin/sshvpn

# Where make install puts things: DESTDIR for a package's staging tree.
PREFIX      ?= /usr/local
BINDIR      ?= $(PREFIX)/bin
MANDIR      ?= $(PREFIX)/share/man
UNITDIR     ?= $(PREFIX)/lib/systemd/system
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR  ?= $(PREFIX)/share/zsh/site-functions
UNITS       := sshvpn.service sshvpn-kernel.service sshvpn@.service

# The commit, for sshvpn version where the go command stamps none (a git
# worktree, GOFLAGS=-buildvcs=false); a stamp it does make wins.
VCS_LDFLAGS = $(shell git rev-parse HEAD >/dev/null 2>&1 && \
	echo "-X main.vcsRevision=$$(git rev-parse HEAD)" \
	"-X main.vcsTime=$$(TZ=UTC git log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ)" \
	"-X main.vcsModified=$$(test -z "$$(git status --porcelain --untracked-files=no)" && echo false || echo true)")

.PHONY: help build install uninstall test unit integration fmt-check vet vet-cross fuzz bench bench-sweep clean

help: ## show this list
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build bin/sshvpn
	$(GO) build -ldflags '$(VCS_LDFLAGS)' -o $(BIN) ./cmd/sshvpn

install: build ## install the binary, man pages, bash and zsh completion and systemd units under DESTDIR/PREFIX (default /usr/local)
	install -D -m 0755 $(BIN) $(DESTDIR)$(BINDIR)/sshvpn
	install -d $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(UNITDIR) $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR)
	$(BIN) man --dir $(DESTDIR)$(MANDIR)/man1
	$(BIN) completion bash > $(DESTDIR)$(BASHCOMPDIR)/sshvpn
	$(BIN) completion zsh > $(DESTDIR)$(ZSHCOMPDIR)/_sshvpn
	for u in $(UNITS); do \
		sed 's|@BINDIR@|$(BINDIR)|g' dist/systemd/$$u > $(DESTDIR)$(UNITDIR)/$$u && chmod 0644 $(DESTDIR)$(UNITDIR)/$$u || exit 1; \
	done

uninstall: ## remove what make install put under DESTDIR/PREFIX
	rm -f $(DESTDIR)$(BINDIR)/sshvpn $(DESTDIR)$(MANDIR)/man1/sshvpn.1 $(DESTDIR)$(MANDIR)/man1/sshvpn-*.1 \
		$(DESTDIR)$(BASHCOMPDIR)/sshvpn $(DESTDIR)$(ZSHCOMPDIR)/_sshvpn
	for u in $(UNITS); do rm -f $(DESTDIR)$(UNITDIR)/$$u; done

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

bench: ## micro-benchmarks, then the comparison harness and the loss sweep in namespaces (root; BENCH=quick|full, see bench/README.md)
	@start=$$SECONDS; \
	$(GO) test -run '^$$' -bench . -benchmem ./relay/... ./kernel/ && \
	$(GO) test -tags integration -run '^$$' -bench '^Benchmark(Paths|Sweep)$$' -benchtime 1x -timeout 45m ./bench/; \
	code=$$?; echo "make bench: $$((SECONDS - start)) s wall"; exit $$code

bench-sweep: ## the loss sweep alone: 1, 32, 128 parallel downloads per transport, with its floors (root; see bench/README.md)
	$(GO) test -tags integration -run '^$$' -bench '^BenchmarkSweep$$' -benchtime 1x -timeout 30m ./bench/

clean: ## remove build output
	rm -rf bin integration.log
