.PHONY: install style quality test demo

# The same commands as the README's first lines.
install:
	python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 -e ".[dev]"

style:
	ruff check --fix . && ruff format .

quality:
	ruff check . && ruff format --check .

test:
	python -m pytest tests -q
