# Tether: see README.md.
GO      ?= go
BIN     ?= bin/tether
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/tether-sh/tether/internal/cli.Version=$(VERSION)

.PHONY: build run test test-short fuzz bench soak vet fmt clean release

# Static (no cgo): every tether command is a fresh process, and a dynamic
# one pays the loader, libc's start and cgo's thread set-up, about 1 ms of
# CPU each (#18). User and group look-ups then read /etc/passwd and
# /etc/group, and ask getent for what those lack (internal/osuser).
build:
	CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/tether

# Build, start an agent for you on 127.0.0.1:4422 if none runs, open a session.
run: build
	./scripts/run.sh

# The whole test suite, race detector included (what CI runs). Every step
# runs even if an earlier one fails; see scripts/test.sh.
test:
	GO=$(GO) ./scripts/test.sh

# Fuzz every decoder for a while (FUZZTIME=1m make fuzz).
fuzz:
	./scripts/fuzz.sh $${FUZZTIME:-30s}

# Every figure twice: bash sessions (the default shell) and builtin ones.
bench: build
	$(GO) run ./bench -tether $(BIN) -shell bash | tee bench/results.md
	$(GO) run ./bench -tether $(BIN) -shell builtin -out bench/results-builtin.json -svg bench/fanout-builtin.svg | tee bench/results-builtin.md

# 1,000 random network cuts during 20 MB transfers each way, every byte checked.
soak:
	TETHER_SOAK_CUTS=$${CUTS:-1000} $(GO) test -count=1 -run TestNetworkCutsExactlyOnce -v -timeout 60m ./internal/e2e

# Static builds for the hosts ssh:// targets bootstrap: a client uploads the
# one for a host's architecture, found next to itself or in
# $$TETHER_RELEASE_DIR (see README, "Fleets reached over ssh").
release:
	mkdir -p dist
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o dist/tether-linux-amd64 ./cmd/tether
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o dist/tether-linux-arm64 ./cmd/tether
	cd dist && sha256sum tether-linux-amd64 tether-linux-arm64 > SHA256SUMS

vet:
	$(GO) vet ./...

fmt:
	gofmt -l -w $$(git ls-files '*.go')

clean:
	rm -rf bin dist
