# Two commands for a fresh machine with Python 3.10+: `make serve` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: serve dev test lint bench vendor clean

serve: $(VENV)/.runtime
	$(BIN)/python -m handler serve $(ARGS)

# The test and client tools (the official SDK among them) in .venv, without running anything.
dev: $(VENV)/.dev

# MLflow's server too: tests/test_mlflow_import.py imports from a real `mlflow server` (about a minute to install).
test: lint bench/.mlflow-venv/.installed
	$(BIN)/python -m pytest $(ARGS)

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(VENV)/.dev bench/.mlflow-venv/.installed
	$(BIN)/python -m bench $(ARGS)

# MLflow's registry, the comparison in `make bench` and the source of the import tests, in an environment of its own:
# the project never imports it.
bench/.mlflow-venv/.installed: bench/requirements-mlflow.txt
	$(PYTHON) -m venv bench/.mlflow-venv
	bench/.mlflow-venv/bin/python -m pip install -q -r bench/requirements-mlflow.txt
	touch $@

# Dependencies for Function Compute (CPython 3.10, x86_64 Linux), shipped beside the code in $(FC_VENDOR),
# and bytecode compiled by python3.10: FC's code directory is read-only, so a cold start would otherwise
# compile every module again (3-3.6x slower). index.py puts $(FC_VENDOR) on sys.path only when it runs on that
# interpreter (its name is sys.implementation.cache_tag, sys.platform and the machine), so tests and the bench on
# another Python keep their own packages. Without python3.10 see docs/deployment.md (Building vendor/).
FC_PYTHON ?= python3.10
FC_VENDOR := vendor/cpython-310-linux-x86_64
vendor: requirements.txt
	rm -rf vendor
	$(PYTHON) -m pip install -q --no-compile --target $(FC_VENDOR) --python-version 3.10 --platform manylinux2014_x86_64 \
		--implementation cp --only-binary=:all: --no-deps $$(sed '/^# Outside FC only/,$$d' requirements.txt | grep -vE '^(#|$$|oss2|crcmod)')
	@# oss2 and crcmod ship only as source: built by python3.10 where there is one (else crcmod's C part is
	@# built for this Python, and FC's python3.10 uses its pure-Python fallback: oss2 runs with CRC off here).
	@if $(FC_PYTHON) --version >/dev/null 2>&1; then py=$(FC_PYTHON); else py=$(PYTHON); fi; \
		$$py -m pip install -q --no-compile --target $(FC_VENDOR) --no-deps $$(grep -E '^(oss2|crcmod)==' requirements.txt)
	@if $(FC_PYTHON) --version >/dev/null 2>&1; then \
		$(FC_PYTHON) -m compileall -q --invalidation-mode checked-hash vendor handler index.py; \
	else \
		echo "warning: $(FC_PYTHON) not found: no python3.10 bytecode shipped; cold starts will be slower" >&2; \
	fi

$(VENV)/.runtime: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

clean:
	rm -rf $(VENV) vendor .pytest_cache .hypothesis .mypy_cache .ruff_cache bench/.mlflow-venv
