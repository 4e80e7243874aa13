# mailops.postfix — developer entry points. `make test` is what CI runs.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: test demo docs deps venv lint sanity units package molecule bench soak changelog clean

test: lint sanity units package molecule

deps:
	scripts/install-system-deps.sh

$(VENV)/.stamp: requirements/dev.txt
	scripts/setup-venv.sh

# The venv needs python3-venv on a fresh Debian, and the tests need real Postfix.
venv: deps $(VENV)/.stamp

lint: venv
	$(BIN)/yamllint -s .
	root=$(CURDIR) && . molecule/env.sh && mailops_podman_collection && $(BIN)/ansible-lint --offline
	$(BIN)/antsibull-changelog lint

sanity: venv
	scripts/sanity.sh

units: venv
	$(BIN)/pytest -n 2 tests/unit

# The tarball users install: no development files; from the installed copy, every module
# documented, the docs linted (antsibull-docs), bindep/ansible-builder checked, the demo applied.
package: venv
	scripts/package-check.sh

# The HTML documentation site in .build/docs/build/html (antsibull-docs + Sphinx, offline).
docs: venv
	scripts/docs.sh

molecule: venv
	scripts/molecule.sh

demo: venv
	scripts/demo.sh

bench: venv
	$(BIN)/python bench/run.py

# Random tables compiled by us and checked by real Postfix for MINUTES; stops at the first
# difference with a reproducer under bench/out/soak/ (bench/README.md, "Soak").
MINUTES ?= 30
soak: venv
	$(BIN)/python bench/soak.py --minutes $(MINUTES)

clean:
	rm -rf .build tests/output bench/out
