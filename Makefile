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

.PHONY: help build test unit integration reliability bench bench-scale lint fmt crds deploy testbed testbed-up testbed-down testbed-status testbed-lock demo clean node-packages

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
integration: testbed image ## tests against the real kube-apiserver and moto
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

# Issue 18's scale run, once per size: the raised IAM rate to create and delete (the
# emulator-bound part), the production rate in the steady phases. N = 4000 by default, the
# largest the emulator holds in a bench run's time on the 2-core test machine; N = 1000 is
# written by SCALE_ARGS="--sizes 1000 --repetitions 1 --report bench/scale-1000.md --json bench/scale-1000.json"
# and N = 10,000 (SCALE_ARGS="--sizes 10000 ...") did not finish in a session there
# (docs/benchmarks.md, "At scale").
SCALE_ARGS ?= --sizes 4000 --repetitions 1 --report bench/SCALE.md --json bench/scale.json
bench-scale: testbed ## measure N = 4000 at the production cadence; writes bench/SCALE.md and bench/scale.json
	$(CARGO) bench --locked --bench operator --no-run
	$(VENV)/bin/python tests/testbed/testbed.py up
	@status=0; $(CARGO) bench --locked --bench operator -- $(SCALE_ARGS) || status=$$?; \
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

# --- the image and the release -----------------------------------------------------------------

# `make image` builds the Dockerfile's image without a container engine (scripts/image-oci.py):
# it runs the Dockerfile's build-stage commands here (`cargo build --release`,
# scripts/image-rootfs.sh), gives the layer the final stage's USER/ENTRYPOINT/CMD/LABEL with
# umoci and writes an OCI archive that `ctr images import` and skopeo's `oci-archive:` read.
# tests/dockerfile.rs checks that both builds agree and that the image runs.
CHART_APP_VERSION := $(shell sed -n 's/^appVersion: *"*\([^"]*\)"* *$$/\1/p' charts/bucketwire/Chart.yaml)
IMAGE_REPOSITORY ?= ghcr.io/bucketwire/bucketwire
IMAGE_TAG ?= $(CHART_APP_VERSION)
IMAGE_ARCHIVE ?= target/image/bucketwire.oci.tar
# For the tests (tests/dockerfile.rs, tests/node.rs): the archive `make image` wrote and its name.
export BUCKETWIRE_IMAGE_ARCHIVE = $(abspath $(IMAGE_ARCHIVE))
export BUCKETWIRE_IMAGE_REPOSITORY = $(IMAGE_REPOSITORY)
export BUCKETWIRE_IMAGE_TAG = $(IMAGE_TAG)
# Debian packages (command:package) the image build (umoci) and tests/dockerfile.rs (runc) need;
# `image-tools` installs those whose command is missing (CI machines are fresh Debian 12, as root).
IMAGE_APT_PACKAGES := umoci:umoci runc:runc
RELEASE_DIR ?= target/dist
KUBECTL := $(VENV)/bin/kubectl

.PHONY: image image-tools release

image-tools: ## install umoci and runc (Debian packages) if missing
	@missing=""; for tool in $(IMAGE_APT_PACKAGES); do \
	  command -v "$${tool%%:*}" >/dev/null || [ -x "/usr/sbin/$${tool%%:*}" ] || missing="$$missing $${tool#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  echo "apt-get install$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

image: image-tools ## build the operator's image without Docker: target/image/bucketwire.oci.tar (IMAGE_ARCHIVE)
	$(PYTHON) scripts/image-oci.py --repository $(IMAGE_REPOSITORY) --tag $(IMAGE_TAG) --archive $(IMAGE_ARCHIVE) --cargo $(CARGO)

# The version is IMAGE_TAG (default: the chart's appVersion): the chart is packaged with it as
# both version and appVersion, so the packaged chart installs exactly this image by default
# (image.repository still defaults to values.yaml's; the README says how to point it elsewhere).
RELEASE_KUSTOMIZATION := target/image/release-kustomization
release: image $(HELM) $(VENV)/.installed ## image archive, packaged chart and rendered manifests in target/dist
	rm -rf $(RELEASE_DIR) $(RELEASE_KUSTOMIZATION) && mkdir -p $(RELEASE_DIR) $(RELEASE_KUSTOMIZATION)
	cp $(IMAGE_ARCHIVE) $(RELEASE_DIR)/bucketwire-$(IMAGE_TAG).oci.tar
	$(HELM) package charts/bucketwire --version $(IMAGE_TAG) --app-version $(IMAGE_TAG) --destination $(RELEASE_DIR)
	$(KUBECTL) kustomize deploy/crds > $(RELEASE_DIR)/bucketwire-crds-$(IMAGE_TAG).yaml
	{ echo "resources: [$$(realpath --relative-to=$(RELEASE_KUSTOMIZATION) deploy)]"; \
	  echo "images: [{name: ghcr.io/bucketwire/bucketwire, newName: $(IMAGE_REPOSITORY), newTag: \"$(IMAGE_TAG)\"}]"; \
	} > $(RELEASE_KUSTOMIZATION)/kustomization.yaml
	$(KUBECTL) kustomize $(RELEASE_KUSTOMIZATION) > $(RELEASE_DIR)/bucketwire-$(IMAGE_TAG).yaml
	rm -rf $(RELEASE_KUSTOMIZATION)
	@# What a user installs must be this version, this image.
	@chart=$$($(HELM) show chart $(RELEASE_DIR)/bucketwire-$(IMAGE_TAG).tgz); \
	  grep -qx 'version: $(IMAGE_TAG)' <<<"$$chart" && grep -qx 'appVersion: $(IMAGE_TAG)' <<<"$$chart" \
	  || { echo "release: the packaged chart's version/appVersion are not $(IMAGE_TAG):"; echo "$$chart"; exit 1; }
	@grep -q 'image: "*$(IMAGE_REPOSITORY):$(IMAGE_TAG)"*$$' $(RELEASE_DIR)/bucketwire-$(IMAGE_TAG).yaml \
	  || { echo "release: bucketwire-$(IMAGE_TAG).yaml does not run $(IMAGE_REPOSITORY):$(IMAGE_TAG)"; exit 1; }
	cd $(RELEASE_DIR) && sha256sum bucketwire-* > SHA256SUMS && ls -l

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
