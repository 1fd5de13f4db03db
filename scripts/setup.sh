#!/usr/bin/env bash
# Create the course's virtual environment and install the helper package with its pinned
# dependencies. Called by `make setup`; safe to run again.
set -euo pipefail
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

version=$("$PYTHON" -c 'import sys; print(f"{sys.version_info.major}.{sys.version_info.minor}")')
case "$version" in
  3.10|3.11|3.12) ;;
  *) echo "The course needs Python 3.10, 3.11 or 3.12; $PYTHON is $version. Set PYTHON=python3.X." >&2; exit 1 ;;
esac
if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
  echo "$PYTHON cannot create virtual environments: run  apt-get install python$version-venv" >&2
  exit 1
fi
# The embedded Triton's python stub links the shared Python library.
if ! ldconfig -p 2>/dev/null | grep -q "libpython$version.so.1.0" \
   && [ ! -e "$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')/libpython$version.so.1.0" ]; then
  echo "warning: libpython$version.so.1.0 not found: the embedded Triton needs it (apt-get install libpython$version)" >&2
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e .
echo "Installed the course into $VENV"
