#!/usr/bin/env bash
# Start command for a pod whose container image IS NGC's Triton image
# (nvcr.io/nvidia/tritonserver:26.10-py3, or another NGC release): docs/pods.md, set-up 2.
#
# It finds the course (or clones it), checks the image's tritonserver, installs the course into
# a virtual environment on the pod's volume (made from the image's own Python), builds the model,
# runs `triton-course doctor`, then runs JupyterLab on 0.0.0.0 in the foreground.
# Safe to run again: after a pod restart it skips pip when pyproject.toml has not changed.
#
# Settings (environment variables, all optional):
#   TRITON_COURSE_ROOT  the course folder. Default: the checkout holding this script, else
#                       /workspace/triton-course
#   TRITON_COURSE_REPO  git URL to clone into TRITON_COURSE_ROOT when that folder has no course
#   TRITON_COURSE_REF   branch or tag to clone (default: the repository's default branch)
#   VENV                the virtual environment (default: <course>/.venv, on the volume)
#   PYTHON              the interpreter the environment is made from (default: python3)
#   TRITONSERVER        the tritonserver binary (default: on PATH, else /opt/tritonserver/bin)
#   JUPYTER_PORT        JupyterLab's port (default: 8888)
#   JUPYTER_TOKEN       JupyterLab's token; JUPYTER_PASSWORD is read too (RunPod's templates use
#                       that name). Neither set: one is made, kept in <venv>/.jupyter-token, printed.
#   POD_START_NO_LAB=1  stop after `triton-course doctor` (exit status: doctor's)
#   POD_START_ON_ERROR  "exit" or "sleep": after an error, exit, or print it and keep the
#                       container alive so that you can connect and fix it. Default: sleep on
#                       RunPod (RUNPOD_POD_ID is set), else exit.
set -euo pipefail

# The newest release in the course's table: the same as triton_course.ngc.CURRENT.image (a test checks).
NGC_IMAGE=nvcr.io/nvidia/tritonserver:26.10-py3

say() { printf 'pod_start: %s\n' "$*"; }

fail() {  # fail WHAT [FIX]
  {
    printf '\npod_start: ERROR: %s\n' "$1"
    if [ -n "${2:-}" ]; then printf 'pod_start: Fix: %s\n' "$2"; fi
  } >&2
  local mode=${POD_START_ON_ERROR:-}
  if [ -z "$mode" ]; then
    if [ -n "${RUNPOD_POD_ID:-}" ]; then mode="sleep"; else mode="exit"; fi
  fi
  if [ "$mode" = sleep ]; then
    printf 'pod_start: The container stays up so that you can connect (web terminal or SSH), fix this\n' >&2
    printf 'pod_start: and run the start script again: bash %s\n' "${script:-scripts/pod_start.sh}" >&2
    exec sleep infinity
  fi
  exit 1
}

is_course() { [ -f "$1/pyproject.toml" ] && grep -q '^name = "triton-course"' "$1/pyproject.toml"; }

# --- 1. the course folder -------------------------------------------------------------------
script=""
here=""
if [ -n "${BASH_SOURCE[0]:-}" ] && [ -f "${BASH_SOURCE[0]}" ]; then
  script=${BASH_SOURCE[0]}
  here=$(cd "$(dirname "$script")/.." && pwd)
fi
if [ -n "${TRITON_COURSE_ROOT:-}" ]; then
  course=$TRITON_COURSE_ROOT
elif [ -n "$here" ] && is_course "$here"; then
  course=$here
else
  course=/workspace/triton-course
fi

if ! is_course "$course"; then
  if [ -z "${TRITON_COURSE_REPO:-}" ]; then
    fail "No course in $course." \
      "Set TRITON_COURSE_REPO to the course's git URL (it is cloned there), or TRITON_COURSE_ROOT to the folder that holds it."
  fi
  if [ -e "$course" ] && [ -n "$(ls -A "$course" 2>/dev/null)" ]; then
    fail "$course exists but holds no course (no pyproject.toml naming triton-course)." \
      "Point TRITON_COURSE_ROOT at an empty or missing folder, or move that folder away."
  fi
  command -v git >/dev/null || fail "git is not installed, so the course cannot be cloned." "apt-get update && apt-get install -y git"
  say "cloning $TRITON_COURSE_REPO into $course"
  clone=(git clone --depth 1)
  if [ -n "${TRITON_COURSE_REF:-}" ]; then clone+=(--branch "$TRITON_COURSE_REF"); fi
  mkdir -p "$(dirname "$course")"
  "${clone[@]}" "$TRITON_COURSE_REPO" "$course" || fail "git clone of $TRITON_COURSE_REPO failed (message above)." \
    "Check the URL and the pod's network; a private repository needs a token in the URL."
  is_course "$course" || fail "$TRITON_COURSE_REPO holds no course (no pyproject.toml naming triton-course)." \
    "Check TRITON_COURSE_REPO and TRITON_COURSE_REF."
fi
course=$(cd "$course" && pwd)
script=${script:-$course/scripts/pod_start.sh}
export TRITON_COURSE_ROOT=$course
cd "$course"
say "course: $course"

# --- 2. the image's Triton ------------------------------------------------------------------
triton=${TRITONSERVER:-}
if [ -z "$triton" ]; then
  triton=$(command -v tritonserver || true)
  if [ -z "$triton" ] && [ -x /opt/tritonserver/bin/tritonserver ]; then triton=/opt/tritonserver/bin/tritonserver; fi
fi
if [ -z "$triton" ] || [ ! -x "$triton" ]; then
  fail "No tritonserver in this container (not on PATH, not in /opt/tritonserver/bin${TRITONSERVER:+, not at $TRITONSERVER})." \
    "This script is for a pod whose container image is an NGC Triton image such as $NGC_IMAGE (docs/pods.md, set-up 2). On any other pod, run \`make setup\` in the course folder and use the embedded server (set-up 1)."
fi
backends=""
for folder in "$(dirname "$triton")"/../backends/*/; do
  if [ -d "$folder" ]; then backends+="$(basename "$folder") "; fi
done
backends=${backends% }
say "tritonserver: $triton (Triton ${TRITON_SERVER_VERSION:-version unknown}, NGC release ${NVIDIA_TRITON_SERVER_VERSION:-unknown}; backends: ${backends:-none found})"

# --- 3. the course's packages, in a virtual environment on the volume -------------------------
python=${PYTHON:-python3}
command -v "$python" >/dev/null || fail "No $python in this image." "apt-get update && apt-get install -y python3 python3-pip"
pyversion=$("$python" -c 'import sys; print(f"{sys.version_info.major}.{sys.version_info.minor}")')
case "$pyversion" in
  3.10|3.11|3.12) ;;
  *) fail "The course needs Python 3.10, 3.11 or 3.12; $python is $pyversion." "Set PYTHON to another interpreter of the image." ;;
esac
venv=${VENV:-$course/.venv}
stamp=$venv/.pod-start-installed
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $(command -v "$python") $pyversion"

venv_python_ok() {
  [ -x "$venv/bin/python" ] && [ "$("$venv/bin/python" -c 'import sys; print(f"{sys.version_info.major}.{sys.version_info.minor}")' 2>/dev/null)" = "$pyversion" ]
}

if [ -x "$venv/bin/triton-course" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && venv_python_ok; then
  say "packages: already installed in $venv (pyproject.toml unchanged), no pip run"
else
  if ! venv_python_ok; then
    # The environment sees the image's own packages, and uses the image's pip: NGC images have
    # pip but not always the venv module's ensurepip.
    say "creating the virtual environment $venv from $python $pyversion"
    "$python" -m venv --clear --system-site-packages --without-pip "$venv" ||
      fail "Could not create the virtual environment $venv (message above)." "Check that $(dirname "$venv") is writable and has space (df -h)."
  fi
  "$venv/bin/python" -m pip --version >/dev/null 2>&1 ||
    fail "pip is missing for $python." "apt-get update && apt-get install -y python3-pip, then start again."
  say "installing the course and its pinned packages into $venv"
  say "(the first start downloads a few GB, PyTorch with its CUDA libraries among them: several minutes)"
  "$venv/bin/python" -m pip install --progress-bar off --disable-pip-version-check -e "$course" ||
    fail "pip could not install the course (its message is above)." \
      "Check free space (df -h $venv) and the network; then start the script again: it carries on from where pip stopped."
  echo "$want" >"$stamp"
  touch "$venv/.installed"  # the Makefile's stamp: `make lab` and `make test` work in the pod too
fi
"$venv/bin/triton-course" --help >/dev/null 2>&1 ||
  fail "The course's command does not run in $venv." "Delete $venv and start again (it is rebuilt)."

# --- 4. the model, perf_analyzer, and the doctor ----------------------------------------------
# perf_analyzer, which `triton-course prepare` puts into the environment, needs libb64.so.0d. A pod's
# system files are new at each start (only the volume stays), so it is installed at each start.
if ! ldconfig -p 2>/dev/null | grep -q libb64.so.0d; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing libb64-0d for perf_analyzer"
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends libb64-0d; } \
      >/dev/null 2>&1 || say "could not install libb64-0d; lessons 07 and 07b need it: apt-get install libb64-0d"
  else
    say "perf_analyzer needs libb64-0d (lessons 07 and 07b): sudo apt-get install libb64-0d"
  fi
fi
say "building the model artifact (only the first time)"
"$venv/bin/triton-course" prepare || fail "triton-course prepare failed (message above)." \
  "Its message says what to do; \`$venv/bin/triton-course prepare --force\` rebuilds from scratch."
say "triton-course doctor:"
status=0
"$venv/bin/triton-course" doctor || status=$?
if [ "$status" != 0 ]; then
  say "doctor reports a MISSING requirement above (exit status $status)."
fi

if [ "${POD_START_NO_LAB:-0}" = 1 ]; then
  say "POD_START_NO_LAB=1: not starting JupyterLab"
  exit "$status"
fi

# --- 5. JupyterLab, in the foreground -------------------------------------------------------
port=${JUPYTER_PORT:-8888}
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  fail "Something already listens on port $port (a JupyterLab from an earlier run?)." \
    "\`$venv/bin/jupyter server list\` shows running servers; stop it, or set JUPYTER_PORT."
fi
token_file=$venv/.jupyter-token
if [ -n "${JUPYTER_TOKEN:-}" ]; then
  token=$JUPYTER_TOKEN; shown="(from JUPYTER_TOKEN, not shown)"
elif [ -n "${JUPYTER_PASSWORD:-}" ]; then
  token=$JUPYTER_PASSWORD; shown="(from JUPYTER_PASSWORD, not shown)"
else
  if [ ! -s "$token_file" ]; then
    (umask 077; "$venv/bin/python" -c 'import secrets; print(secrets.token_hex(24))' >"$token_file")
  fi
  token=$(cat "$token_file"); shown=$token
fi
# jupyter_server reads its token from JUPYTER_TOKEN: it stays out of the process list.
export JUPYTER_TOKEN=$token
unset JUPYTER_PASSWORD
# Kernels, terminals and the Triton servers they start find the course's Python first.
export PATH="$venv/bin:$PATH" SHELL=/bin/bash
# Terminals run bash as it is, not as a login shell (which may reset PATH from /etc/profile).
lab_args=(--ip=0.0.0.0 --port="$port" --ServerApp.port_retries=0 --no-browser --allow-root
          --ServerApp.root_dir="$course" --LabApp.default_url=/lab/tree/notebooks/00_setup.ipynb
          '--ServerApp.terminado_settings={"shell_command": ["/bin/bash"]}')
say "JupyterLab on 0.0.0.0:$port, notebooks in $course"
say "token: $shown"
if [ -n "${RUNPOD_POD_ID:-}" ]; then
  proxy="https://${RUNPOD_POD_ID}-${port}.proxy.runpod.net"
  # Browsers send the proxy's address as the origin of the kernels' websockets.
  lab_args+=(--ServerApp.allow_origin="$proxy")
  say "open: $proxy/lab?token=<token> (or the pod's Connect panel, port $port)"
else
  say "open: http://<this machine>:$port/lab?token=<token>"
fi
exec "$venv/bin/jupyter" lab "${lab_args[@]}"
