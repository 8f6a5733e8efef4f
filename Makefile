# FerroLB's developer commands. The two that matter most:
#   make run    the controller against a real API server built on this machine
#   make test   every test (as root: the network tests need namespaces)
SHELL := bash
GO    ?= go
# The API server and etcd for tests, built once and cached outside the clone.
ASSETS = $$(bash hack/envtest.sh)

.PHONY: all build run test deps generate check-generated lint ci

all: build

build:
	$(GO) build -o bin/ferrolb ./cmd/ferrolb

run:
	$(GO) run ./hack/local

deps:
	bash hack/deps.sh

test: deps
	KUBEBUILDER_ASSETS="$(ASSETS)" $(GO) test -race -count=1 ./...

# Deepcopy methods, CRDs and RBAC roles from the markers in api/ and internal/.
generate:
	$(GO) tool controller-gen object paths=./api/...
	$(GO) tool controller-gen crd paths=./api/... output:crd:dir=config/crd/bases
	$(GO) tool controller-gen rbac:roleName=ferrolb-controller paths=./internal/controller/... output:rbac:dir=config/rbac/controller
	$(GO) tool controller-gen rbac:roleName=ferrolb-speaker paths=./internal/speaker/... output:rbac:dir=config/rbac/speaker

# Fails when the committed generated files differ from what `make generate` writes.
check-generated: generate
	@if [ -n "$$(git status --porcelain -- api config)" ]; then \
		git status --porcelain -- api config; git diff --stat -- api config; \
		echo "generated files are stale: run 'make generate' and commit the result" >&2; exit 1; fi

lint:
	$(GO) vet ./...
	$(GO) tool -modfile=tools/go.mod golangci-lint run ./...
	cd tools && $(GO) mod verify >/dev/null

ci: check-generated lint test
