# The two commands of the README: `make demo` and `make test`. Everything they need (a venv,
# maturin, pytest, mypy) is installed here, so a fresh clone needs only Rust and Python 3.11+.

PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.deps-stamp
# Release build: the demo and the benchmarks measure it; debug Rust tests are built by cargo test.
MATURIN_FLAGS ?= --release

.PHONY: demo test test-rust test-python develop bench bench-rust bench-python bench-client bench-peers clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "maturin>=1.9.4,<2" "pytest>=8" "pytest-asyncio>=1.0" "pytest-timeout>=2.3" "mypy>=1.10"
	touch $(STAMP)

develop: $(STAMP)
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH maturin develop $(MATURIN_FLAGS) --quiet

# Starts the embedded simulator, runs the client against it, exits within 30 s.
demo: develop
	$(PY) -m amiwire demo

test: test-rust test-python

test-rust:
	cargo fmt --check
	cargo check --no-default-features --all-targets
	! grep -rnE '\b(tokio|pyo3)\b' src/proto
	! grep -rnE 'crate::(error|transport|sim|py)\b' src/proto
	! grep -rn 'pyo3' src/transport src/sim
	$(PYTHON) scripts/check_cycles.py src/sim src/proto src/transport
	$(PYTHON) scripts/check_file_sizes.py src/transport
	cargo test --no-default-features

test-python: develop
	$(PY) tools/gen_schema.py --check
	$(PY) -m mypy.stubtest amiwire._core --allowlist tests/stubtest-allowlist.txt
	$(PY) -m mypy python/amiwire
	$(PY) -m pytest -q

bench: bench-rust bench-python bench-client

bench-rust:
	cargo bench --no-default-features --bench decode

bench-peers: $(STAMP)
	$(PY) -m pip install --quiet panoramisk asterisk-ami

bench-python: develop bench-peers
	$(PY) benches/bench_parse.py

bench-client: develop bench-peers
	$(PY) benches/bench_client.py

clean:
	cargo clean
	rm -rf $(VENV)
