# Set-up is part of every target: a fresh machine needs only `make demo` or `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.jq-installed

.PHONY: install test test-all lint demo bench docs clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torchvision 0.29.1 needs torch 2.14.1; both wheels lie on this machine's disk.
	$(PY) -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
	$(PY) -m pip install -q -e ".[torch,flax,onnx,test]"
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder

test-all: lint
	$(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder -m ""

demo: install
	$(PY) examples/digits_ptq.py
	$(PY) examples/flax_digits_ptq.py

bench: install
	$(PY) benchmarks/bench_search.py
	$(PY) benchmarks/bench_convert.py
	$(PY) benchmarks/bench_ptq.py

# The documentation site (mkdocs.yml, docs/): warnings are errors; the pages go to site/.
docs: install
	$(PY) -m pip install -q -e ".[docs]"
	$(VENV)/bin/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
