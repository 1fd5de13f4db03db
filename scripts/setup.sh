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
# System pieces a bare Debian/Ubuntu may lack: venv support, and the shared Python library
# that the embedded Triton's python stub links. Installed here when we are root, else explained.
libdir=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
missing=()
"$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || missing+=("python$version-venv")
if ! ldconfig -p 2>/dev/null | grep -q "libpython$version.so.1.0" && [ ! -e "$libdir/libpython$version.so.1.0" ]; then
  missing+=("libpython$version")
fi
# perf_analyzer (lessons 07 and 07b; `triton-course prepare` puts it into the environment) needs
# libb64.so.0d: installed with the others when we can, else the lessons say what to do.
optional=()
ldconfig -p 2>/dev/null | grep -q "libb64.so.0d" || optional+=(libb64-0d)
if [ ${#missing[@]} -gt 0 ] || [ ${#optional[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "Installing ${missing[*]} ${optional[*]} with apt-get"
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" "${optional[@]}"
  elif [ ${#missing[@]} -gt 0 ]; then
    echo "The course needs: ${missing[*]}. Install them (sudo apt-get install ${missing[*]}) and run again." >&2
    exit 1
  else
    echo "Note: perf_analyzer needs ${optional[*]}: sudo apt-get install ${optional[*]} (lessons 07 and 07b use it)." >&2
  fi
fi

# On a GPU pod whose Python already holds a CUDA build of PyTorch (the PyTorch pod images), the course
# uses that one instead of downloading the pinned one and its CUDA libraries (several GB) into $VENV:
# the environment then sees the machine's packages, and every pin but PyTorch's is installed into it.
# TRITON_COURSE_OWN_TORCH=1 asks for the pinned PyTorch anyway.
machine_torch=""
if [ -z "${TRITON_COURSE_OWN_TORCH:-}" ]; then
  machine_torch=$("$PYTHON" -c 'import torch; print(torch.__version__ if torch.version.cuda else "")' 2>/dev/null || true)
fi
if [ -n "$machine_torch" ] && [ -x "$VENV/bin/python" ] && ! grep -q "include-system-site-packages = true" "$VENV/pyvenv.cfg"; then
  echo "Note: $VENV was made without this machine's packages, so it keeps the pinned PyTorch (remove $VENV to use the machine's $machine_torch)."
  machine_torch=""
fi
if [ -n "$machine_torch" ]; then
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv --system-site-packages "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  # shellcheck disable=SC2046  # one word per pin
  "$VENV/bin/python" -m pip install --quiet $("$VENV/bin/python" scripts/pins.py torch)
  "$VENV/bin/python" -m pip install --quiet --no-deps -e .
  echo torch > "$VENV/machine-packages.txt"  # the doctor reports it as the machine's own, not as a wrong pin
  echo "Installed the course into $VENV, with this machine's PyTorch $machine_torch (CUDA) in place of the pinned one"
else
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -e .
  rm -f "$VENV/machine-packages.txt"
  echo "Installed the course into $VENV"
fi
