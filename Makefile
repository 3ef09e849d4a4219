# KMI — run `make help` for the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# Test services (override in the environment).
export TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test
export TEST_REDIS_URL ?= redis://127.0.0.1:6379/0

PYTEST_ARGS ?=

.PHONY: help venv run test test-steps system-packages lint typecheck pytest coverage interop bench bench-issue bench-crl bench-ocsp bench-api bench-search bench-acme fixtures check-services clean docker-check bench-signing bench-console bench-est bench-log docs docs-serve docs-check lock package

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

# .venv holds exactly the locked versions (every file checked against its hash), then KMI itself
# in editable mode. requirements/*.txt are made from pyproject.toml by `make lock`.
LOCK_MAIN := requirements/main.txt
LOCK_DEV  := requirements/dev.txt
UV_COMPILE = $(VENV)/bin/uv pip compile pyproject.toml --generate-hashes --universal --python-version 3.11 --quiet

$(STAMP): pyproject.toml $(LOCK_DEV)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --require-hashes -r $(LOCK_DEV)
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

venv: $(STAMP) ## create or refresh .venv (automatic for every target)

lock: ## re-pin requirements/*.txt after changing pyproject.toml's dependencies (keeps other pins; UPGRADE=1 re-pins all)
	@test -x $(VENV)/bin/uv || { test -x $(PY) || $(PYTHON) -m venv $(VENV); $(PY) -m pip install --quiet "uv>=0.9,<1"; }
	$(UV_COMPILE) $(if $(UPGRADE),--upgrade) -o $(LOCK_MAIN)
	$(UV_COMPILE) $(if $(UPGRADE),--upgrade) --extra dev -c $(LOCK_MAIN) -o $(LOCK_DEV)

run: $(STAMP) ## serve KMI on http://127.0.0.1:8000 with a Celery worker and beat (SQLite, no Redis)
	$(PY) manage.py runstack

test: ## lint, type-check and run the whole suite against PostgreSQL and Redis (prints its wall time)
	@start=$$(date +%s); rc=0; $(MAKE) --no-print-directory test-steps || rc=$$?; \
	  echo "make test: wall time $$(( $$(date +%s) - start )) s"; exit $$rc

test-steps: system-packages $(STAMP) check-services lint docs-check pytest

system-packages: ## install the Debian packages the suite drives (or print the command when not root)
	@bash scripts/system-packages.sh

check-services: $(STAMP)
	@$(PY) tests/check_services.py

lint: $(STAMP) ## ruff, ruff format --check, mypy --strict on pki/ and web/, makemigrations --check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy pki web
	DJANGO_SETTINGS_MODULE=tests.settings $(PY) manage.py makemigrations --check --dry-run

package: $(STAMP) ## build the wheel and the sdist into dist/ (the wheel gives a `kmi` command)
	$(VENV)/bin/uv build --out-dir dist .

# The manual (mkdocs-material; mkdocs.yml, docs/). Strict: a broken link or anchor fails the build.
export NO_MKDOCS_2_WARNING := 1
DOCS_ADDR ?= 127.0.0.1:8001

docs: $(STAMP) ## regenerate the reference pages (docs/generate.py) and build the manual into site/
	$(PY) docs/generate.py
	$(VENV)/bin/mkdocs build --strict --quiet

docs-serve: $(STAMP) ## serve the manual with live reload on DOCS_ADDR (default 127.0.0.1:8001)
	$(VENV)/bin/mkdocs serve --strict --dev-addr $(DOCS_ADDR)

docs-check: $(STAMP)
	@site=$$(mktemp -d) && trap 'rm -rf "$$site"' EXIT && $(VENV)/bin/mkdocs build --strict --quiet --site-dir "$$site"

NODE_DEPS := tests/interop/node/node_modules/.package-lock.json

$(NODE_DEPS): tests/interop/node/package-lock.json
	npm ci --prefix tests/interop/node --no-audit --no-fund --loglevel=error

# One pytest worker more than there are cores (at most 10: tests/acme_support.py gives each
# worker ten ACME ports): many tests wait on a server, a worker process or a real client
# starting, and the extra worker uses the core they leave idle. worksteal: a worker that runs
# out of tests takes queued ones from a worker still busy with a long test.
PYTEST_WORKERS ?= $(shell n=$$(( $$(nproc) + 1 )); [ $$n -gt 10 ] && n=10; echo $$n)

pytest: $(STAMP) $(NODE_DEPS)
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

coverage: $(STAMP) $(NODE_DEPS) check-services ## the whole suite with branch coverage of pki/ (fails under 85%)
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist worksteal --cov --cov-report=term $(PYTEST_ARGS)

interop: $(STAMP) $(NODE_DEPS) check-services ## only the tests that drive real third-party programs
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist worksteal -m interop $(PYTEST_ARGS)

bench: bench-issue bench-crl bench-ocsp bench-api bench-search bench-acme bench-signing bench-console bench-est bench-log ## every benchmark (prints RESULT lines)

bench-issue: $(STAMP) check-services ## issuance throughput against PostgreSQL
	$(PY) bench/issue.py

bench-log: $(STAMP) check-services ## transparency log: 1M leaves appended, inclusion proofs, tree heads, issuance cost
	$(PY) bench/log.py

bench-crl: $(STAMP) check-services ## CRL publication with 10k, 100k and 1M revoked certificates in PostgreSQL
	$(PY) bench/crl.py

docker-check: $(STAMP) ## validate docker/compose.yaml (docker-compose config) and the Dockerfile (hadolint)
	$(VENV)/bin/pytest -q tests/test_docker.py

bench-signing: $(STAMP) check-services ## issuance through the signing queue (KMI_SIGNING=worker, real signer)
	BENCH_REDIS_URL=$(TEST_REDIS_URL) $(PY) bench/signing.py

bench-ocsp: $(STAMP) check-services ## OCSP responder req/s and p99: gunicorn (2 workers) + wrk, PostgreSQL + Redis
	PY=$(PY) bench/ocsp.sh

bench-api: $(STAMP) check-services ## REST enrollment throughput: gunicorn (2 workers), PostgreSQL, Redis, wrk
	$(PY) bench/api_enroll.py

bench-search: $(STAMP) check-services ## certificate listing and q= search through the API at 1M rows
	$(PY) bench/search.py

bench-console: $(STAMP) check-services ## console dashboard, list, search and detail server time at 1M certificates
	$(PY) bench/console.py

bench-acme: $(STAMP) check-services ## certbot wall time for one http-01 issuance; ACME orders/s
	$(PY) bench/acme.py

bench-est: $(STAMP) check-services ## EST simpleenroll (HTTP Basic, one-time codes): gunicorn (2 workers), PostgreSQL, wrk
	$(PY) bench/est.py

fixtures: $(STAMP) ## regenerate the committed test keys, CSRs and chain
	$(PY) tests/fixtures/generate.py

clean: ## remove .venv and var/ (the demo database and KEK!)
	rm -rf $(VENV) var
