# vk8s: run `make help` for the targets.
SHELL := /usr/bin/env bash
.DEFAULT_GOAL := help

GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
TOOLS_DIR := $(shell hack/tools.sh dir)
LAB       ?= lab
GO_TEST_FLAGS ?=
# make bench's footprint sizes (NxK: slices of K nodes; 1000x3 is 3,000 virtual nodes and
# adds about 25 minutes), the name of its lab, and where it writes each run's figures as
# JSON (docs/performance.md lists the runs kept there; empty: none written).
BENCH_SITES   ?= 3,30,300
BENCH_LAB     ?= bench
BENCH_RESULTS ?= docs/bench

export VK8S_TOOLS_DIR := $(TOOLS_DIR)
export PATH := $(TOOLS_DIR):$(PATH)

LDFLAGS := -X main.version=$(VERSION) -X main.toolsDir=$(TOOLS_DIR)

# make image: the repository, the tag and the platforms of the image; its timestamps are the
# commit's (SOURCE_DATE_EPOCH), so that one commit gives one digest.
IMAGE     ?= ghcr.io/vk8s-io/vk8s
TAG       ?= $(VERSION)
PLATFORMS ?= linux/amd64,linux/arm64
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
IMAGE_FLAGS = -root $(CURDIR) -go $(GO) -out $(CURDIR)/bin/image -image $(IMAGE) -tag $(TAG) \
	-platforms $(PLATFORMS) -version $(VERSION) -created $(SOURCE_DATE_EPOCH) \
	-revision $(shell git rev-parse HEAD 2>/dev/null || echo unknown)

##@ Develop

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"} /^##@/ {printf "\n%s\n", substr($$0, 5)} /^[a-zA-Z_-]+:.*##/ {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build bin/vk8s, and bin/kubectl-vk8s (a link: the kubectl plugin, `kubectl vk8s`).
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/vk8s ./cmd/vk8s
	ln -sf vk8s bin/kubectl-vk8s

.PHONY: image
image: ## Build the OCI image without a container engine (IMAGE, TAG, PLATFORMS): bin/image/oci (OCI layout), bin/image/vk8s-linux-ARCH.tar (docker/podman load); prints its digest.
	cd hack/image && $(GO) run . $(IMAGE_FLAGS)

.PHONY: image-push
image-push: ## Build the image and push it to IMAGE:TAG with the credentials of the docker config.
	cd hack/image && $(GO) run . $(IMAGE_FLAGS) -push

.PHONY: generate
generate: ## Regenerate deepcopy code and CRDs from api/, and the chart's CRD, RBAC (from +kubebuilder:rbac markers) and kind policy templates (pinned controller-gen).
	hack/update-codegen.sh

.PHONY: verify
verify: ## Fail when generated files, formatting, license headers or go.mod are stale.
	hack/verify-headers.sh
	hack/verify-codegen.sh
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "run gofmt -w"; exit 1; }
	$(GO) mod tidy -diff
	cd hack/image && $(GO) mod tidy -diff

.PHONY: lint
lint: ## gofmt, go vet and golangci-lint (pinned, built once per machine; .golangci.yml says what must stay true).
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	cd hack/image && $(GO) vet ./...
	hack/tools.sh build golangci-lint
	golangci-lint run ./...
	cd hack/image && golangci-lint run ./...

##@ Test

.PHONY: test
test: tools verify ## Run unit tests and the integration tests against a real lab.
	$(GO) test -count=1 -timeout 40m $(GO_TEST_FLAGS) ./...
	cd hack/image && $(GO) test -count=1 -timeout 20m ./...

.PHONY: test-unit
test-unit: ## Run the unit tests only (no clusters), make image's among them.
	$(GO) test -count=1 -short ./...
	cd hack/image && $(GO) test -count=1 -short ./...

##@ Lab

.PHONY: demo
demo: tools build ## Bring up the lab (host, 3 sites x 3 nodes, provider, webhook) and run the examples: the seed (deployment1, 3 replicas per site), A/B, two virtual-sites, a Service, a StatefulSet, a CronJob.
	bin/vk8s lab up --name $(LAB)
	kubectl --kubeconfig "$$(bin/vk8s lab kubeconfig --name $(LAB))" get sites,virtualsites -A
	kubectl --kubeconfig "$$(bin/vk8s lab kubeconfig --name $(LAB))" get nodes -L vk8s.io/site,topology.kubernetes.io/region
	kubectl --kubeconfig "$$(bin/vk8s lab kubeconfig --name $(LAB))" apply -f examples/pod-on-site2-node3.yaml
	kubectl --kubeconfig "$$(bin/vk8s lab kubeconfig --name $(LAB))" wait --for=jsonpath='{.status.phase}'=Running pod/hello-site2 --timeout=120s
	kubectl --kubeconfig "$$(bin/vk8s lab kubeconfig --name $(LAB))" get pods -o wide
	kubectl --kubeconfig "$$(bin/vk8s lab kubeconfig --name $(LAB))" apply -f examples/seed/00-namespace.yaml
	kubectl --kubeconfig "$$(bin/vk8s lab kubeconfig --name $(LAB))" wait --for=jsonpath='{.metadata.labels.vk8s\.io/virtual-kubernetes}'=vk namespace/demo --timeout=60s
	@# The API server selects webhook calls on that label through its namespace cache, a moment behind.
	sleep 2
	kubectl --kubeconfig "$$(bin/vk8s lab kubeconfig --name $(LAB))" apply -f examples/seed/10-deployment1.yaml
	kubectl --kubeconfig "$$(bin/vk8s lab kubeconfig --name $(LAB))" -n demo rollout status deployment/deployment1 --timeout=180s
	kubectl --kubeconfig "$$(bin/vk8s lab kubeconfig --name $(LAB))" -n demo get deployment,pods -o wide
	@# The A/B test: variant-a on site1, variant-b on site3, the Deployment's own template on site2.
	kubectl --kubeconfig "$$(bin/vk8s lab kubeconfig --name $(LAB))" apply -f examples/ab/ab-test.yaml
	kubectl --kubeconfig "$$(bin/vk8s lab kubeconfig --name $(LAB))" -n demo rollout status deployment/shop --timeout=180s
	kubectl --kubeconfig "$$(bin/vk8s lab kubeconfig --name $(LAB))" -n demo get pods -l app=shop -o wide -L vk8s.io/site,vk8s.io/override
	@# The same, site by site, through the kubectl plugin (kubectl vk8s, docs/fleet.md).
	bin/kubectl-vk8s --kubeconfig "$$(bin/vk8s lab kubeconfig --name $(LAB))" -n demo status deployment/shop
	@# Two virtual-sites: the union of their sites (site1 and site3).
	kubectl --kubeconfig "$$(bin/vk8s lab kubeconfig --name $(LAB))" apply -f examples/union/union.yaml
	kubectl --kubeconfig "$$(bin/vk8s lab kubeconfig --name $(LAB))" -n demo rollout status deployment/catalog --timeout=180s
	kubectl --kubeconfig "$$(bin/vk8s lab kubeconfig --name $(LAB))" -n demo get pods -l app=catalog -o wide -L vk8s.io/site
	@# Applications: a site-local Service for deployment1, a StatefulSet with a claim per
	@# ordinal on its site, a CronJob whose every schedule runs on every site.
	kubectl --kubeconfig "$$(bin/vk8s lab kubeconfig --name $(LAB))" apply -f examples/apps/
	kubectl --kubeconfig "$$(bin/vk8s lab kubeconfig --name $(LAB))" -n demo rollout status statefulset/web --timeout=180s
	kubectl --kubeconfig "$$(bin/vk8s lab kubeconfig --name $(LAB))" -n demo get statefulset,pvc -o wide
	kubectl --kubeconfig "$$(bin/vk8s lab kubeconfig --name $(LAB))" -n demo wait --for=condition=vk8s.io/SitesReady service/deployment1 --timeout=60s
	kubectl --kubeconfig "$$(bin/vk8s lab kubeconfig --name $(LAB))" -n demo get service deployment1 -o jsonpath='{.metadata.annotations.vk8s\.io/site-endpoints}{"\n"}'
	for s in site1 site2 site3; do kubectl --kubeconfig "$$(bin/vk8s lab kubeconfig --site $$s --name $(LAB))" -n vk8s-demo get endpointslices -l kubernetes.io/service-name=deployment1 -o wide || exit 1; done
	@echo "waiting for the first Job of CronJob hello (it starts within a minute)"
	timeout 180 sh -c 'until kubectl --kubeconfig "$$(bin/vk8s lab kubeconfig --name $(LAB))" -n demo get jobs -l app=hello -o jsonpath="{.items[*].status.succeeded}" | grep -q 3; do sleep 3; done'
	kubectl --kubeconfig "$$(bin/vk8s lab kubeconfig --name $(LAB))" -n demo get cronjobs,jobs
	kubectl --kubeconfig "$$(bin/vk8s lab kubeconfig --site site2 --name $(LAB))" get pods -A -l vk8s.io/tenant -o wide
	bin/kubectl-vk8s --kubeconfig "$$(bin/vk8s lab kubeconfig --name $(LAB))" sites

.PHONY: bench
bench: tools build ## Measure pod start latency (host vs. sites directly, by stage), admission, the provider's footprint at 3/30/300 sites (BENCH_SITES=3,30,300,1000x3 for 3,000 virtual nodes), and the mirror lag at 3 and 30 sites; the figures also go to BENCH_RESULTS/<date>-<commit>.json (docs/performance.md).
	go run ./e2e/bench --vk8s bin/vk8s --name $(BENCH_LAB) --sites '$(BENCH_SITES)' --results '$(BENCH_RESULTS)'

.PHONY: lab-down
lab-down: build ## Remove the lab made by `make demo`.
	bin/vk8s lab down --name $(LAB)

##@ Tools

.PHONY: tools
tools: ## Build the Kubernetes tools once per machine into a cache (no-op when warm).
	hack/tools.sh build

.PHONY: tools-dir
tools-dir: ## Print the folder of the built tools (use with make -s).
	@echo $(TOOLS_DIR)

.PHONY: clean
clean: ## Remove bin/ (the tool cache stays; see hack/tools.sh).
	rm -rf bin
