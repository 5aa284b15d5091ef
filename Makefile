# The two commands of the README: `make demo` and `make test`. Everything they need (a venv,
# maturin, pytest, mypy) is installed here, so a fresh clone needs only Rust and Python 3.11+.

PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.deps-stamp
# Release build: the demo and the benchmarks measure it; debug Rust tests are built by cargo test.
MATURIN_FLAGS ?= --release

.PHONY: demo test test-rust test-python test-typing develop dist dist-check docs bench bench-rust bench-python bench-client bench-flood bench-live bench-peers clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "maturin>=1.9.4,<2" "pytest>=8" "pytest-asyncio>=1.0" "pytest-timeout>=2.3" "mypy>=1.10" \
		"pyright>=1.1.380"
	touch $(STAMP)

DOCS_STAMP = $(VENV)/.docs-stamp

$(DOCS_STAMP): $(STAMP)
	$(PY) -m pip install --quiet "mkdocs-material>=9.5,<10" "mkdocstrings[python]>=0.26,<2"
	touch $(DOCS_STAMP)

# maturin run as from the venv: its interpreter is then the one cargo's build scripts saw last
# time, and `make develop` and `make dist` share their compiled artefacts instead of each
# rebuilding pyo3 after the other.
MATURIN = VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH maturin

develop: $(STAMP)
	$(MATURIN) develop $(MATURIN_FLAGS) --quiet

# Starts the embedded simulator, runs the client against it, exits within 30 s.
demo: develop
	$(PY) -m amiwire demo

test: test-rust test-python dist-check docs

test-rust:
	cargo fmt --check
	cargo check --no-default-features --all-targets
	! grep -rnE '\b(tokio|pyo3)\b' src/proto
	! grep -rnE 'crate::(error|transport|sim|py)\b' src/proto
	! grep -rn 'pyo3' src/transport src/sim
	$(PYTHON) scripts/check_cycles.py src/sim src/proto src/transport
	$(PYTHON) scripts/check_file_sizes.py src/transport
	cargo test --no-default-features

test-python: develop test-typing
	$(PY) tools/gen_schema.py --check
	$(PY) -m mypy.stubtest amiwire._core --allowlist tests/stubtest-allowlist.txt
	$(PY) -m mypy python/amiwire
	$(PY) -m pytest -q

# Code as users write it (tests/typing) must pass both checkers users run. pyright fetches its
# node package once, on first use (then cached in ~/.cache).
test-typing: develop
	$(PY) -m mypy --strict tests/typing
	$(VENV)/bin/pyright

# An sdist and an abi3 wheel, tagged by maturin's own manylinux check (the lowest tag the
# extension's symbols allow; --compatibility pypi refuses a tag PyPI would reject).
DIST ?= dist
dist: $(STAMP)
	rm -rf $(DIST)
	$(MATURIN) sdist --out $(DIST)
	$(MATURIN) build --release --out $(DIST) --compatibility pypi --auditwheel check
	ls $(DIST)

# The wheel as a user gets it: installed into a fresh venv, run from outside the source tree,
# the README's examples (the package-page quickstart first) and the typed user script run.
DIST_VENV = $(DIST)/venv
dist-check: dist
	$(PYTHON) -m venv $(DIST_VENV)
	$(DIST_VENV)/bin/python -m pip install --quiet --no-index $(DIST)/amiwire-*.whl
	cd $(DIST) && venv/bin/python -c "import amiwire, pathlib; assert 'site-packages' in amiwire.__file__, amiwire.__file__"
	cd $(DIST) && venv/bin/python $(abspath tests/python/test_readme.py) $(abspath README.md)
	cd $(DIST) && venv/bin/python $(abspath tests/typing/user_code.py) > /dev/null

# The API reference, from the docstrings and the stubs; strict: a broken reference fails it.
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

bench: bench-rust bench-python bench-client bench-flood bench-live

bench-rust:
	cargo bench --no-default-features --bench decode --bench live

bench-peers: $(STAMP)
	$(PY) -m pip install --quiet panoramisk asterisk-ami

bench-python: develop bench-peers
	$(PY) benches/bench_parse.py

bench-client: develop bench-peers
	$(PY) benches/bench_client.py

bench-flood: develop
	$(PY) benches/bench_flood.py

bench-live: develop
	$(PY) benches/bench_live.py

clean:
	cargo clean
	rm -rf $(VENV) $(DIST) site
