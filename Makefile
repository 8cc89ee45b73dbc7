# Two commands do all set-up: `make demo` and `make test`. Both create .venv when missing.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Optional extras to install as well; CI (.ci/run) adds `ray` so the Ray tests run.
EXTRAS ?= test

.PHONY: demo test venv bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	@touch $(STAMP)
	@echo "$(EXTRAS)" > $(VENV)/.extras

venv: $(STAMP)
	@grep -qx "$(EXTRAS)" $(VENV)/.extras 2>/dev/null || { $(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]" && echo "$(EXTRAS)" > $(VENV)/.extras; }

demo: $(STAMP)
	$(BIN)/imbvision demo --out runs/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_cli_startup.py
	$(BIN)/python benchmarks/bench_check_cache.py
	$(BIN)/python benchmarks/bench_embed.py
	$(BIN)/python benchmarks/demo_hardness.py
	$(BIN)/python benchmarks/bench_strategies.py
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/audit_noise.py
	$(BIN)/python benchmarks/mt_rare.py

clean:
	rm -rf runs .pytest_cache
