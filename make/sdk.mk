# The SDKs (gen/go's Go module, the Python client) and the grpcurl guide, tested from
# outside against a real mesh (`python -m mesh up --detach` on free ports).
#
# Go's modules for gen/go come from the Go module proxy into Go's module cache
# (`go env GOMODCACHE`; CI keeps it between runs, like pip's and npm's caches). They are
# fetched before pytest starts, so no test spends its time limit downloading.

GO_SDK := gen/go

.PHONY: sdk-go-deps
sdk-go-deps: ## Download the Go SDK's modules (gen/go/go.mod) into Go's module cache
	cd $(GO_SDK) && go mod download && go mod verify

.PHONY: lint-sdk-go
lint-sdk-go: sdk-go-deps ## go vet and gofmt over the Go SDK and its examples
	cd $(GO_SDK) && go vet ./...
	@unformatted=$$(gofmt -l $(GO_SDK)); if [ -n "$$unformatted" ]; then \
	  echo "gofmt would change: $$unformatted"; exit 1; fi

.PHONY: test-sdk
test-sdk: setup sdk-go-deps ## SDK tests (Go, Python) against a real mesh on free ports
	$(PY) -m pytest tests/sdk

.PHONY: test-docs
test-docs: setup ## Run docs/grpcurl.md's commands against a real mesh on free ports
	$(PY) -m pytest tests/docs

TEST_PREREQS += lint-sdk-go
