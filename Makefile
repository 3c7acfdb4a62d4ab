# mailmove — see README.md.
STATICCHECK_VERSION := v0.8.2
WORKFLOWCHECK_VERSION := v0.6.0
GO ?= go
BIN := $(CURDIR)/bin
# What `mailmove --version` prints: the commit, marked when the checkout
# has changes.
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo devel)

.PHONY: all build test test-unit bench chaos record-histories demo demo-stop dev-server lint FORCE

all: build

build: bin/mailmove bin/mailmove-worker bin/testbed bin/temporal

bin/mailmove: FORCE
	$(GO) build -ldflags "-X main.buildVersion=$(VERSION)" -o $@ ./starter

bin/mailmove-worker: FORCE
	$(GO) build -o $@ ./worker/cmd/mailmove-worker

bin/testbed: FORCE
	$(GO) build -o $@ ./tests/testbed/cmd/testbed

# The pinned Temporal CLI, built from the Go module proxy once (about five
# minutes) and then reused: it is rebuilt only when missing or when its pin,
# tests/temporalcli/go.mod (the CLI's version and the SQLite driver its dev
# server needs), changes.
bin/temporal: tests/temporalcli/go.mod
	cd tests/temporalcli && $(GO) build -o $(BIN)/temporal github.com/temporalio/cli/cmd/temporal

# Unit, workflow and integration tests. The integration tests start their own
# Dovecot servers (installing dovecot-imapd when missing) and their own
# Temporal dev server from bin/temporal.
test: bin/temporal
	$(GO) test -count=1 -timeout 25m ./...
	cd third_party/go-imap && $(GO) test -count=1 ./...

# Fast tests only: no Dovecot, no Temporal server.
test-unit:
	$(GO) test -count=1 ./internal/... ./workflows/... ./starter/...
	cd third_party/go-imap && $(GO) test -count=1 ./...

# The chaos test at full size: a 20-mailbox batch of 400 messages each
# between real Dovecot servers behind fault proxies, two workers killed,
# stopped past their heartbeat timeout and restarted, Temporal and the source
# restarted, connections cut; then every message compared, and the same
# users again in a new batch. `make test` runs it with 60 messages each.
chaos: bin/temporal
	MAILMOVE_CHAOS=full $(GO) test -count=1 -run TestChaos -v -timeout 60m ./tests/integration/

# Figures, not assertions: initial sync and no-change incremental pass of a
# 20,000-message mailbox (wall time, commands sent), and the Temporal history
# of a move through 20 incremental passes. BENCH_FLAGS=-messages=2000 for a
# quick run.
bench: bin/temporal
	$(GO) run ./tests/bench $(BENCH_FLAGS)

# Regenerates tests/testdata/histories from real runs (dev server, Dovecot,
# fault proxy) for the replay tests. Keep a history recorded before a
# workflow change as NAME-v0.json: see docs/evolving-workflows.md.
record-histories: bin/temporal
	$(GO) run ./tests/replay/record

demo: build
	bash scripts/demo.sh

demo-stop:
	bash scripts/demo.sh stop

dev-server: bin/mailmove bin/temporal
	bin/mailmove dev-server

# gofmt, go vet, staticcheck, Temporal's workflowcheck (determinism of the
# workflow code; .ci/workflowcheck.yaml lists the order-independent map
# loops it may call) and the import rules of ARCHITECTURE.md.
lint: bin/staticcheck bin/workflowcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	bin/staticcheck ./...
	bin/workflowcheck -config .ci/workflowcheck.yaml ./workflows/...
	$(GO) test -count=1 ./tests/arch/

# Linters, pinned and built once like bin/temporal.
bin/staticcheck:
	GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

bin/workflowcheck:
	GOBIN=$(BIN) $(GO) install go.temporal.io/sdk/contrib/tools/workflowcheck@$(WORKFLOWCHECK_VERSION)
