# kubelab: `make run` starts a lab cluster, `make test` runs the whole suite.
SHELL   := /bin/bash
GO      ?= go
BIN     := bin/kubelab
DATA    ?= /var/lib/kubelab
NODES   ?= 2
# Host tools the lab and the root-only tests use: command -> Debian package.
HOST_TOOLS := iptables:iptables iptables-restore:iptables nft:nftables ip:iproute2 curl:curl conntrack:conntrack

.PHONY: all build deps run test vet bench clean

all: build

# build: kubelab, and beside it the small kubelab-workload that the agent
# prefers for built-in containers (kubelab alone works too, slower to start
# each container). Both are static (no cgo): no dynamic loader or libc
# start-up per process, which a burst of container starts feels.
build:
	CGO_ENABLED=0 $(GO) build -o bin/ ./cmd/kubelab ./cmd/kubelab-workload

# deps installs the missing host tools (Debian/Ubuntu, apt-get) and says which.
deps:
	@missing=""; for pair in $(HOST_TOOLS); do \
	cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	missing=$$(echo $$missing | tr ' ' '\n' | sort -u | tr '\n' ' '); \
	if [ -n "$${missing// /}" ]; then \
	echo "make deps: installing host tools:$$missing"; \
	if [ "$$(id -u)" != 0 ]; then echo "make deps: need root to install$$missing" >&2; exit 1; fi; \
	DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else echo "make deps: host tools present"; fi

run: deps build
	$(BIN) up --nodes $(NODES) --data-dir $(DATA)

vet:
	$(GO) vet ./...

# test: unit, integration and (as root) the end-to-end lab tests.
test: deps vet
	$(GO) test -race -count=1 -timeout 25m ./...

bench: build
	$(GO) test -run '^$$' -bench . -benchtime 1x ./...

clean:
	rm -rf bin
