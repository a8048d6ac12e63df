# The two commands of the README:
#   make book   build the rendered book (HTML) into _build/html
#   make test   run the whole test suite (unit tests, notebooks, a forced book build, browser check)
# and, for authors: make robustness (every chapter over seeds x CPU kernel sets; long).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: book test preflight venv assets browser reader unit notebooks nbval-copies checks student grade grade-demo sandbox robustness clean

book: preflight venv assets
	$(BIN)/python tools/build_book.py
	@echo "Open $(CURDIR)/_build/html/index.html in a browser."

# See tools/test.sh: the book build (seed 0, native kernels) and nbval over the student edition
# (seed 1, portable kernels) run side by side, then the rendered pages are checked.
test: preflight browser venv assets nbval-copies sandbox
	tools/test.sh

# Python, venv and npm, checked before anything long starts (one sentence per missing piece).
preflight:
	@tools/preflight.sh $(PYTHON)

venv: $(STAMP)
$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

assets:
	tools/fetch_assets.sh

# Chromium or Chrome for the rendered-page test: found where it is commonly installed, installed
# with apt-get only as root on Debian/Ubuntu, else one sentence says what to install.
browser:
	@$(PYTHON) tools/find_browser.py --install >/dev/null

# The notebooks in a reader's environment (Colab's packages, the wheel, no build tools), outside
# the checkout: every chapter whole. (`make test` runs chapter 2 whole and the setup of the rest.)
reader: venv
	$(BIN)/python tools/reader_env.py --all

# Run only parts of the suite.
unit: venv
	$(BIN)/pytest tests -m "not rendered and not reader"
notebooks: venv nbval-copies
	ATTNLAB_SEED=1 ATEN_CPU_CAPABILITY=default $(BIN)/pytest _nbval --nbval-lax

# The copies nbval runs: the student edition (no solutions) with the reference outputs of the
# checked cells (tests/notebook_checks/) put back.
nbval-copies: venv
	rm -rf _nbval && $(BIN)/python tools/student_edition.py notebooks _nbval/student >/dev/null
	$(BIN)/python tools/notebook_outputs.py --inject _nbval _nbval/student/*.ipynb && rm -rf _nbval/student

# Notebooks are stored without outputs. nbval runs copies in _nbval/ whose cells marked
# NBVAL_CHECK_OUTPUT carry the reference outputs kept in tests/notebook_checks/; this target
# re-executes the notebooks, refreshes those references and strips the notebooks.
checks: venv
	$(BIN)/python tools/notebook_outputs.py --refresh-checks notebooks/*.ipynb

# The student edition: copies of the notebooks without solution cells, in student/.
student: venv
	$(BIN)/python tools/student_edition.py notebooks student

# Grade a class: make grade SUBMISSIONS=path/ (one folder per student, each with their notebooks)
# writes grades/grades.csv, grades/grades.md and grades/grades-moodle.csv; GRADE_TIMEOUT seconds
# per notebook (default 300). See book/instructors.md.
SUBMISSIONS ?=
GRADE_TIMEOUT ?= 300
grade: venv sandbox
	@test -n "$(SUBMISSIONS)" || (echo "usage: make grade SUBMISSIONS=path/to/submissions" && false)
	$(BIN)/python tools/grade.py $(SUBMISSIONS) --out grades --timeout $(GRADE_TIMEOUT)

# The grader on the made-up class of its tests, red team included (tools/demo_class.py):
# grades-demo/grades.md.
grade-demo: venv sandbox
	rm -rf _grade_demo && $(BIN)/python tools/demo_class.py _grade_demo/submissions
	$(BIN)/python tools/grade.py _grade_demo/submissions --out grades-demo --timeout 60

# The grader's sandbox is bubblewrap (bwrap): installed from the Debian package when this is a
# Debian or Ubuntu system and make runs as root; otherwise one sentence says what to install
# (without it the grader still runs, and its report says the notebooks were not isolated).
sandbox:
	@command -v bwrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	     grep -qiE '^(ID|ID_LIKE)=.*(debian|ubuntu)' /etc/os-release 2>/dev/null; then \
	    apt-get update -qq && apt-get install -y -qq bubblewrap >/dev/null; \
	  else \
	    echo "The grader's sandbox needs bubblewrap: install the package 'bubblewrap' (it provides bwrap), e.g. sudo apt-get install bubblewrap."; \
	  fi; }

# Every chapter over seeds 0-4 x {this machine's kernels, PyTorch's portable kernels}; writes
# book/robustness_runs/<cpu>-cpu.jsonl, which the page "How robust are these numbers?" shows.
# About 25 minutes on 2 cores. Options: make robustness ROBUSTNESS_ARGS="--seeds 0 1 --jobs 1".
robustness: venv
	$(BIN)/python tools/robustness.py $(ROBUSTNESS_ARGS)

clean:
	rm -rf _build _nbval student _grade_demo grades grades-demo
