# The two commands of the README:
#   make book   build the rendered book (HTML) into _build/html
#   make test   run the whole test suite (unit tests, notebooks, a forced book build, browser check)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: book test venv assets browser unit notebooks book-forced checks student clean

book: venv assets
	$(BIN)/python tools/build_book.py
	@echo "Open $(CURDIR)/_build/html/index.html in a browser."

test: venv assets browser
	$(BIN)/python tools/build_book.py --force
	$(BIN)/pytest tests notebooks --nbval-lax --durations=15

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
notebooks: venv
	$(BIN)/pytest notebooks --nbval-lax

# Re-execute the notebooks and store the outputs of the cells marked NBVAL_CHECK_OUTPUT
# (the only outputs kept in the repository); all other outputs are stripped.
checks: venv
	$(BIN)/python tools/notebook_outputs.py --refresh-checks notebooks/*.ipynb

# The student edition: copies of the notebooks without solution cells, in student/.
student: venv
	$(BIN)/python tools/student_edition.py notebooks student

clean:
	rm -rf _build student
