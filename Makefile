# bucketwire developer loop. `make test` is what CI runs (.ci/run); `make demo` shows the operator.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
CARGO ?= cargo
GO ?= go

TESTBED := target/testbed
VENV := $(TESTBED)/venv
CONTROLPLANE := $(TESTBED)/bin/controlplane
CONTROLPLANE_SOURCES := $(wildcard tests/controlplane/*.go) tests/controlplane/go.mod tests/controlplane/go.sum
CRD := crds/bucketintegration.yaml
# The version the apiserver reports (as Kubernetes' own build sets it), matching go.mod's k8s.io/kubernetes.
K8S_VERSION := v1.35.4
K8S_VERSION_LDFLAGS := -X k8s.io/component-base/version.gitVersion=$(K8S_VERSION) -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=35 -X k8s.io/component-base/version.gitTreeState=clean
HELM := $(TESTBED)/bin/helm
# How deploy/bucketwire.yaml is rendered (tests/chart.rs renders it the same way).
DEPLOY_RENDER_ARGS := template bucketwire charts/bucketwire --namespace bucketwire-system --kube-version 1.35.0 --set clusterName=my-eks-cluster \
  --set permissionsBoundary=arn:aws:iam::123456789012:policy/bucketwire-boundary

.PHONY: help build test unit integration reliability bench lint fmt crds deploy testbed testbed-up testbed-down testbed-status testbed-lock demo clean node-packages

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

build: ## build the operator
	$(CARGO) build --locked

test: lint unit integration ## everything CI runs: format, lint, unit tests, tests on the test bed

lint: ## cargo fmt --check, clippy -D warnings, gofmt and go vet of the control plane
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	@test -z "$$(gofmt -l tests/controlplane tests/workload)" || { echo "gofmt: run 'make fmt'"; gofmt -l tests/controlplane tests/workload; exit 1; }
	cd tests/controlplane && $(GO) vet -buildvcs=false .
	cd tests/workload && $(GO) vet -buildvcs=false .

unit: ## unit tests (no test bed): pure code, CEL rules, the committed CRD is up to date
	$(CARGO) test --locked --lib --bins

# One test bed for the whole run: build everything first, start it, run every integration
# test against it, and stop it whatever the outcome.
integration: testbed ## tests against the real kube-apiserver and moto
	$(CARGO) test --locked --tests --benches --no-run
	$(VENV)/bin/python tests/testbed/testbed.py up
	@status=0; $(CARGO) test --locked --test '*' || status=$$?; \
	  [ $$status -ne 0 ] || $(CARGO) test --locked --bench operator || status=$$?; \
	  [ $$status -ne 0 ] || $(VENV)/bin/python tests/testbed/decisions.py --out target/reliability/operator_decisions.json || status=$$?; \
	  $(PYTHON) tests/testbed/testbed.py down || status=1; exit $$status

# The figures RELIABILITY.md quotes. Every integration test runs in `make test` too (writing
# under target/reliability/); here, on a test bed of their own, they write reliability/results/,
# which is committed, and the operator role's decisions over the whole suite are summarised.
RELIABILITY_TESTS := --test '*'
reliability: testbed ## run the reliability tests; writes reliability/results/*.json (committed, cited by RELIABILITY.md)
	$(CARGO) test --locked $(RELIABILITY_TESTS) --no-run
	$(VENV)/bin/python tests/testbed/testbed.py up
	@status=0; BUCKETWIRE_RESULTS_DIR=$(CURDIR)/reliability/results $(CARGO) test --locked $(RELIABILITY_TESTS) || status=$$?; \
	  [ $$status -ne 0 ] || $(VENV)/bin/python tests/testbed/decisions.py --out reliability/results/operator_decisions.json || status=$$?; \
	  $(PYTHON) tests/testbed/testbed.py down || status=1; exit $$status

# N = 100 and 1000, three runs each (override: make bench BENCH_ARGS="--sizes 100 --repetitions 5").
# `make test` runs the same harness once with N = 3 (a smoke run that writes under target/).
BENCH_ARGS ?= --sizes 100,1000 --repetitions 3
bench: testbed ## measure the operator with N integrations; writes BENCHMARKS.md and bench/results.json
	$(CARGO) bench --locked --bench operator --no-run
	$(VENV)/bin/python tests/testbed/testbed.py up
	@status=0; $(CARGO) bench --locked --bench operator -- $(BENCH_ARGS) || status=$$?; \
	  $(PYTHON) tests/testbed/testbed.py down || status=1; exit $$status

demo: testbed ## start the test bed, run the operator, wire the example, show it Ready, stop
	scripts/demo.sh

fmt: ## format the Rust and Go sources
	$(CARGO) fmt --all
	gofmt -w tests/controlplane tests/workload

crds: ## regenerate the CRD (crds/, the chart's crds/, deploy/crds/) from the Rust types
	$(CARGO) run --locked --quiet -- crd > $(CRD).tmp && mv $(CRD).tmp $(CRD)
	cp $(CRD) charts/bucketwire/crds/bucketintegration.yaml
	cp $(CRD) deploy/crds/bucketintegration.yaml

# --- the local test bed (real kube-apiserver + moto) ----------------------------------------

$(VENV)/.installed: tests/testbed/requirements.txt tests/testbed/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/testbed/requirements.txt -c tests/testbed/constraints.txt
	touch $@

# kube-apiserver, etcd and kube-controller-manager from Go modules. Go's build cache
# (outside the clone) makes every build after the first take seconds.
$(CONTROLPLANE): $(CONTROLPLANE_SOURCES) Makefile
	@mkdir -p $(dir $@)
	@echo "building the control plane from Go modules (first build: several minutes)"
	cd tests/controlplane && $(GO) build -buildvcs=false -trimpath -ldflags "$(K8S_VERSION_LDFLAGS)" -o $(CURDIR)/$@ .

# The Helm CLI itself (helm.sh/helm/v3/cmd/helm), from Go modules (tests/helm/go.mod pins it).
$(HELM): tests/helm/go.mod tests/helm/go.sum
	@mkdir -p $(dir $@)
	cd tests/helm && $(GO) build -buildvcs=false -trimpath -o $(CURDIR)/$@ helm.sh/helm/v3/cmd/helm

deploy: $(HELM) ## re-render deploy/bucketwire.yaml from the chart with helm template
	{ echo "# Rendered from charts/bucketwire by \`make deploy\` (helm template); do not edit."; \
	  $(HELM) $(DEPLOY_RENDER_ARGS); } > deploy/bucketwire.yaml.tmp && mv deploy/bucketwire.yaml.tmp deploy/bucketwire.yaml

# The IAM policy simulator that decides every request on the test bed (tests/testbed/simulator:
# @cloud-copilot/iam-simulate, pinned by package-lock.json), installed with npm ci.
SIMULATOR := $(TESTBED)/simulator
$(SIMULATOR)/.installed: tests/testbed/simulator/package.json tests/testbed/simulator/package-lock.json
	@mkdir -p $(SIMULATOR)
	cp tests/testbed/simulator/package.json tests/testbed/simulator/package-lock.json $(SIMULATOR)/
	cd $(SIMULATOR) && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $@

# The node (tests/testbed/node.py): Debian's containerd, runc, CNI plugins, iptables and
# conntrack, and umoci for images, installed by name when missing (as root; CI machines are
# fresh Debian 12). The kubelet and kube-proxy are subcommands of the control plane's binary.
NODE_APT_PACKAGES := containerd runc containernetworking-plugins iptables conntrack umoci
NODE_IMAGES := $(TESTBED)/images/pause.oci.tar $(TESTBED)/images/s3-workload.oci.tar
node-packages:
	@if [ "$$(id -u)" != 0 ]; then echo "not root: the test bed runs without a node"; exit 0; fi; \
	  missing=""; for p in $(NODE_APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then echo "installing$$missing"; apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi

# The workload Pods' S3 client (tests/workload: the AWS SDK for Go v2's default chain), static.
$(TESTBED)/bin/s3-workload: tests/workload/main.go tests/workload/go.mod tests/workload/go.sum
	@mkdir -p $(dir $@)
	cd tests/workload && CGO_ENABLED=0 $(GO) build -buildvcs=false -trimpath -o $(CURDIR)/$@ .

$(TESTBED)/images/pause.oci.tar: tests/testbed/node/pause.c tests/testbed/images.py | node-packages
	$(PYTHON) tests/testbed/images.py pause $@

$(TESTBED)/images/s3-workload.oci.tar: $(TESTBED)/bin/s3-workload tests/testbed/images.py | node-packages
	$(PYTHON) tests/testbed/images.py build --ref localhost/bucketwire-testbed/s3-workload:latest --out $@ \
	  --entrypoint /s3-workload --user 65532:65532 $(TESTBED)/bin/s3-workload=/s3-workload

testbed: $(VENV)/.installed $(CONTROLPLANE) $(HELM) $(SIMULATOR)/.installed node-packages $(NODE_IMAGES) ## install moto, the IAM simulator and the node's packages, build the control plane, helm and the node's images

testbed-up: testbed ## start the test bed; writes target/testbed/env
	$(VENV)/bin/python tests/testbed/testbed.py up

testbed-down: ## stop exactly the processes testbed-up started
	$(PYTHON) tests/testbed/testbed.py down

testbed-status:
	$(PYTHON) tests/testbed/testbed.py status

testbed-lock: ## re-pin moto and its dependencies
	rm -rf $(TESTBED)/lockvenv && $(PYTHON) -m venv $(TESTBED)/lockvenv
	$(TESTBED)/lockvenv/bin/pip install --quiet -r tests/testbed/requirements.txt
	{ echo "# Exact versions of the moto server and everything it pulls in (pip freeze of a venv built"; \
	  echo "# from requirements.txt). Regenerate with: make testbed-lock"; \
	  $(TESTBED)/lockvenv/bin/pip freeze; } > tests/testbed/constraints.txt
	rm -rf $(TESTBED)/lockvenv

clean: testbed-down
	$(CARGO) clean
