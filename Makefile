# The two quick-start commands: `make run` (set up, then the main grokking job) and `make test`.
.PHONY: run test ledger setup setup-dev bench clean

run: setup
	.venv/bin/groklab run

test: setup-dev
	.venv/bin/python -m pytest -q

ledger: setup-dev  # the whole suite, then docs/reliability.md rewritten from what it observed
	GROKLAB_LEDGER=1 .venv/bin/python -m pytest -q

setup:
	bash scripts/setup.sh 2>&1 | grep -v "^WARNING: Location" || true
	@.venv/bin/python -c "import groklab" || (echo "setup failed"; exit 1)

setup-dev:
	bash scripts/setup.sh dev 2>&1 | grep -v "^WARNING: Location" || true
	@.venv/bin/python -c "import groklab, pytest, hypothesis" || (echo "setup failed"; exit 1)

bench: setup
	.venv/bin/python benchmarks/bench_step.py

clean:
	rm -rf .venv out
