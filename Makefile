# The two commands of the README:
#   make book   build the rendered book (HTML) into _build/html
#   make test   run the whole test suite (unit tests, notebooks, a forced book build, browser check)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: book test venv assets browser unit notebooks nbval-copies checks student clean

book: venv assets
	$(BIN)/python tools/build_book.py
	@echo "Open $(CURDIR)/_build/html/index.html in a browser."

test: venv assets browser nbval-copies
	$(BIN)/python tools/build_book.py --force
	$(BIN)/pytest tests _nbval --nbval-lax --durations=15

venv: $(STAMP)
$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

assets:
	tools/fetch_assets.sh

# Headless Chromium for the rendered-page test (Debian package; never `playwright install`).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

# Run only parts of the suite.
unit: venv
	$(BIN)/pytest tests -k "not rendered"
notebooks: venv nbval-copies
	$(BIN)/pytest _nbval --nbval-lax

# The copies nbval runs: the notebooks with their reference outputs (tests/notebook_checks/) put back.
nbval-copies: venv
	rm -rf _nbval && $(BIN)/python tools/notebook_outputs.py --inject _nbval notebooks/*.ipynb

# Notebooks are stored without outputs. nbval runs copies in _nbval/ whose cells marked
# NBVAL_CHECK_OUTPUT carry the reference outputs kept in tests/notebook_checks/; this target
# re-executes the notebooks, refreshes those references and strips the notebooks.
checks: venv
	$(BIN)/python tools/notebook_outputs.py --refresh-checks notebooks/*.ipynb

# The student edition: copies of the notebooks without solution cells, in student/.
student: venv
	$(BIN)/python tools/student_edition.py notebooks student

clean:
	rm -rf _build _nbval student
