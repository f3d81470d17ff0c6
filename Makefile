# `make test` is the one test command (README.md, .ci/run). From a fresh
# Debian 12 machine it installs what it needs, then runs every tier.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(CURDIR)/$(VENV)/bin
BUILD := $(CURDIR)/.build
# ansible.cfg points collections_path here; the link makes freifunk.wgmesh
# resolve to this working tree.
COLLECTION_LINK := $(BUILD)/collections/ansible_collections/freifunk/wgmesh
# ansible-test wants a real tree under ansible_collections/<ns>/<name>.
SANITY_TREE := $(BUILD)/sanity/ansible_collections/freifunk/wgmesh
PYTEST_ARGS ?=
# ansible-test needs the controller Python's version (the venv's).
PYVER = $(shell $(BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
# Molecule scenarios `make molecule` runs, in order; override to run one.
MOLECULE_SCENARIOS ?= $(shell cat molecule/scenarios.txt 2>/dev/null | grep -v '^\#')

export PATH := $(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export CONTAINERS_CONF := $(CURDIR)/molecule/shared/containers.conf

.PHONY: help
help: ## Show the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

.PHONY: test
test: deps lint sanity unit integration molecule ## Everything: install, lint, sanity, unit, integration, molecule

.PHONY: deps
deps: system-deps tools ## Install system packages, the pinned venv and link the collection

# What lint and unit need: the venv, the collection link and containers.podman
# (ansible-lint resolves the Molecule playbooks' modules). No root, no QEMU, no
# system-deps install (a missing venv needs only python3-venv).
.PHONY: tools
tools: venv collection collections

.PHONY: system-deps
system-deps:
	hack/install-system-deps

.PHONY: venv
venv: $(VENV)/.installed

$(VENV)/.installed: requirements/test.txt src/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements/test.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e src/
	touch $@

.PHONY: collection
collection:
	mkdir -p $(dir $(COLLECTION_LINK))
	ln -sfn $(CURDIR) $(COLLECTION_LINK)

.PHONY: collections
collections: venv ## containers.podman from the hash-pinned ansible wheel (no Galaxy needed)
	hack/install-collections $(BIN)/python

.PHONY: container-image
container-image: ## Build the Debian 12 container test image (only when its recipe changed)
	hack/build-container-image

.PHONY: lint
lint: tools ## ruff, yamllint, ansible-lint, changelog fragments, twins, host commands, role argument_specs/READMEs
	ruff check .
	ruff format --check .
	yamllint --strict .
	ansible-lint --offline
	antsibull-changelog lint
	python hack/check_twins.py
	python hack/check_host_commands.py
	python hack/check_argument_specs.py
	python hack/role_readme.py --check

# ansible-test --requirements installs its own pins: keep them out of the main venv.
# (--venv would fetch pip's bootstrap script, which may be unreachable; sanity-pip-bootstrap
# installs the copy in hack/ instead.)
SANITY_VENV := $(BUILD)/sanity-venv
$(SANITY_VENV)/.installed: requirements/test.txt
	$(PYTHON) -m venv $(SANITY_VENV)
	$(SANITY_VENV)/bin/pip install --quiet --disable-pip-version-check $$(grep -E '^ansible-core==' requirements/test.txt)
	touch $@

# The pip version ansible-test bootstraps its sanity venvs with.
ANSIBLE_TEST_PIP = $(shell $(SANITY_VENV)/bin/python -c 'import re, ansible_test._internal.python_requirements as r, inspect; print(re.search(r"pip=.([0-9.]+)", inspect.getsource(r.get_venv_packages)).group(1))')

.PHONY: sanity-pip-bootstrap
sanity-pip-bootstrap: $(SANITY_VENV)/.installed
	install -D -m 0644 hack/ansible-test-get-pip.py $(HOME)/.ansible/test/cache/get_pip_$(subst .,_,$(ANSIBLE_TEST_PIP)).py

.PHONY: sanity
sanity: deps sanity-pip-bootstrap ## ansible-test sanity on a copy of the tracked tree
	rm -rf $(SANITY_TREE) && mkdir -p $(SANITY_TREE)
	git ls-files -co --exclude-standard | rsync -a --files-from=- . $(SANITY_TREE)/
	# A repo of its own, so ansible-test lists these files and not the enclosing checkout's.
	cd $(SANITY_TREE) && git init -q && git add -A
	cd $(SANITY_TREE) && PATH=$(SANITY_VENV)/bin:$$PATH ansible-test sanity --requirements --python $(PYVER) --color no

.PHONY: unit
unit: tools ## Unit tests (seconds)
	pytest tests/unit $(PYTEST_ARGS)

.PHONY: integration
integration: deps ## Integration tests on this host: namespaces, wireguard-go, mosquitto, ansible-playbook
	pytest tests/integration $(PYTEST_ARGS)

.PHONY: molecule
molecule: deps ## Molecule scenarios from molecule/scenarios.txt (MOLECULE_SCENARIOS=name for one)
	@for s in $(MOLECULE_SCENARIOS); do \
	  echo "=== molecule test -s $$s"; \
	  start=$$(date +%s); \
	  molecule test -s $$s || exit 1; \
	  echo "=== molecule test -s $$s passed in $$(( $$(date +%s) - start )) s"; \
	done

# The site scenario with the 1,000-peer survival test as its tests (docs/testing.md):
# networkd restart/reload and gateway plays with a changed MTU, port and VNI.
.PHONY: molecule-site-survival
molecule-site-survival: deps ## The site scenario verified by its slow 1,000-peer survival test (molecule/site/survival)
	WGMESH_SITE_TESTS=survival molecule test -s site

# The lab (docs/lab.md): VMs of inventories/lab, site.yml, a simulated Gluon node.
LAB_STATE := $(CURDIR)/.build/lab
# LAB_HA=1: lab-gw2 runs as an HA pair with lab-gw2b (inventories/lab-ha); the
# lab remembers it until `make lab-down`.
LAB_HA ?= $(if $(wildcard $(LAB_STATE)/ha),1,)
# All gateways at once: the lab has no nodes to keep up during a rollout, and
# under TCG each gateway takes minutes.
LAB_PLAYBOOK = ansible-playbook -i inventories/lab $(if $(LAB_HA),-i inventories/lab-ha) -e wgmesh_gateways_serial=3

.PHONY: lab
lab: deps ## The whole backbone on this machine: two gateways, mosquitto, broker, a simulated Gluon node (docs/lab.md; LAB_HA=1: lab-gw2 as an HA pair)
	$(if $(LAB_HA),mkdir -p $(LAB_STATE) && touch $(LAB_STATE)/ha)
	nice -n 5 $(LAB_PLAYBOOK) playbooks/lab.yml

.PHONY: lab-takeover
lab-takeover: tools ## In a lab with LAB_HA=1: skew a member's clock, crash the active member (QEMU killed) with the node's ping running, watch 5 min, boot it again
	$(if $(LAB_HA),,@echo "error: the lab has no HA pair; run 'make lab LAB_HA=1' first (docs/lab.md)" >&2; exit 2)
	$(LAB_PLAYBOOK) playbooks/lab/takeover.yml

.PHONY: lab-ha-failover
lab-ha-failover: ## The VM failover scenario of an HA pair in one command: make lab LAB_HA=1, then make lab-takeover
	$(MAKE) lab LAB_HA=1
	$(MAKE) lab-takeover LAB_HA=1

.PHONY: lab-drift
lab-drift: tools ## In a running lab: hand-edit a config and delete the node's peer, then site.yml repairs both
	$(LAB_PLAYBOOK) playbooks/lab/drift.yml
	nice -n 5 $(LAB_PLAYBOOK) site.yml
	$(LAB_PLAYBOOK) playbooks/lab/drift-check.yml

.PHONY: lab-down
lab-down: ## Remove the lab: its VMs (QEMU processes), disks, SSH key and generated passwords
	if [ -d $(LAB_STATE) ]; then $(BIN)/python molecule/shared/vm/vmctl.py stop --state-dir $(LAB_STATE); fi
	rm -rf $(LAB_STATE)

.PHONY: bench
bench: deps ## Every benchmark in bench/ (root; prints figures beside the naive/upstream way, asserts nothing)
	pip install --quiet --disable-pip-version-check -r requirements/bench.txt
	python bench/filters.py
	python bench/wg_peers_bench.py
	python bench/broker_bench.py
	python bench/worker_reconcile_bench.py --peers 10000
	python bench/key_to_peer_bench.py --keys 1000
	nice -n 10 python bench/ha_failover.py --nodes 200

.PHONY: lock
lock: ## Re-resolve requirements/test.txt from requirements/test.in
	$(PYTHON) -m venv $(BUILD)/lock-venv
	$(BUILD)/lock-venv/bin/pip install --quiet -r requirements/test.in
	{ echo '# Pinned tooling for `make test` (Python 3.11, Debian 12). Regenerate with `make lock`.'; \
	  $(BUILD)/lock-venv/bin/pip freeze --exclude-editable | grep -viE '^(pip|setuptools|wheel)=='; } > requirements/test.txt

.PHONY: clean
clean: ## Remove the venv and build tree
	rm -rf $(VENV) $(BUILD)
