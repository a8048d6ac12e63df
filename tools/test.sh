#!/usr/bin/env bash
# The whole test suite (what `make test` and CI run). Every notebook is executed twice, under
# different conditions, and the two executions run side by side on the two cores:
#   1. the book build: seed 0, this machine's own CPU kernels, every notebook afresh, failing on
#      any cell error or Sphinx warning;
#   2. nbval over the student edition (solutions removed, reference outputs put back): seed 1,
#      PyTorch's portable CPU kernels (ATEN_CPU_CAPABILITY=default), with the unit tests.
# Then the built pages are opened in headless Chromium with the network cut.
set -uo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
mkdir -p _build
$bin/python tools/build_book.py --force > _build/build.log 2>&1 &
build_pid=$!
ATTNLAB_SEED=1 ATEN_CPU_CAPABILITY=default $bin/pytest tests _nbval --nbval-lax -m "not rendered" --durations=15
tests=$?
wait $build_pid
built=$?
grep -E "WARNING|ERROR|Executing notebook failed|book build" _build/build.log || true
if [ $built -ne 0 ]; then
  echo "The book build failed (exit $built); its log follows."
  tail -n 80 _build/build.log
fi
$bin/pytest tests -m rendered
rendered=$?
echo "unit tests and nbval: exit $tests; book build: exit $built; rendered pages: exit $rendered"
[ $tests -eq 0 ] && [ $built -eq 0 ] && [ $rendered -eq 0 ]
