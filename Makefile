# Two commands on a fresh machine:  make run   (the demo)   and   make test   (the suite).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
SUDO    = $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint bench bench-backfill system-deps venv clean i18n

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

## the demo: dev PKI, 1,000 synthetic cases, simulator, service until every packet is delivered
run: $(STAMP)
	$(BIN)/thads-adapter init --demo
	$(BIN)/thads-adapter run --until-idle

## the whole suite, with the real xmlsec1 and a real PostgreSQL server
test: system-deps $(STAMP)
	$(BIN)/ruff check adapter tests bench
	$(BIN)/mypy
	$(BIN)/pytest

## Debian packages the tests need: the xmlsec1 reference binary, a PostgreSQL server and
## SoftHSM2 (a PKCS#11 token in software, for the token signing tests) and Prometheus (the
## monitoring test scrapes the service with a real server and checks the alert rules).
system-deps:
	@missing=""; \
	command -v xmlsec1 >/dev/null 2>&1 || missing="$$missing xmlsec1"; \
	command -v softhsm2-util >/dev/null 2>&1 || missing="$$missing softhsm2"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 \
	  || missing="$$missing postgresql"; \
	command -v openssl >/dev/null 2>&1 || missing="$$missing openssl"; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	command -v msgfmt >/dev/null 2>&1 || missing="$$missing gettext"; \
	command -v systemd-analyze >/dev/null 2>&1 || missing="$$missing systemd"; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    echo "installing:$$missing"; \
	    $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq $$missing >/dev/null; \
	  else echo "please install:$$missing" >&2; exit 2; fi; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check adapter tests bench

## Benchmarks (docs/performance.md says what each figure means). `make bench-backfill` is the
## long one: 200,000 cases (about 400,000 packets, 4 GB of state in $$TMPDIR).
bench: $(STAMP)
	$(BIN)/python bench/outbound.py
	$(BIN)/python bench/inbound.py
	$(BIN)/python bench/signer.py
	$(BIN)/python bench/replay.py
	$(BIN)/python bench/evidence.py
	$(BIN)/python bench/backfill.py --quick

bench-backfill: $(STAMP)
	$(BIN)/python bench/backfill.py --cases 200000

clean:
	rm -rf var $(VENV) .pytest_cache .ruff_cache

## the CLI's message catalogues: merge new messages into every .po, compile the .mo, check
i18n: $(STAMP)
	$(BIN)/python -m adapter.i18n update
	$(BIN)/python -m adapter.i18n compile
	$(BIN)/python -m adapter.i18n check
