#!/usr/bin/env bash
# What `make book` and `make test` need before any long step, each missing piece said in one
# sentence (instead of a failure halfway through an install). Usage: tools/preflight.sh PYTHON
set -u
cd "$(dirname "$0")/.."
py=${1:-python3}
missing=()
if ! command -v "$py" >/dev/null 2>&1; then
  missing+=("Python 3.9 or newer: '$py' was not found (install Python, or run make PYTHON=/path/to/python3).")
elif ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 9))' 2>/dev/null; then
  missing+=("Python 3.9 or newer: '$py' is $("$py" -V 2>&1) (run make PYTHON=/path/to/python3.11, say).")
elif [ ! -x .venv/bin/python ] && ! "$py" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  missing+=("Python's venv module: '$py' cannot create a virtual environment (Debian/Ubuntu: apt-get install python3-venv).")
fi
if [ ! -f _vendor/require.js ] && ! command -v npm >/dev/null 2>&1; then
  missing+=("npm, which fetches the pages' JavaScript once (install Node.js, e.g. apt-get install npm or brew install node).")
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "Before this can run, install:" >&2
  for m in "${missing[@]}"; do echo "  - $m" >&2; done
  exit 1
fi
