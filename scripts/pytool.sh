#!/usr/bin/env bash
# Installs a Python tool into its own virtualenv (once) and prints the venv's bin directory.
# Usage: scripts/pytool.sh <name> <python-version-or-path> <pip requirement>...
# Each tool gets a venv of its own because their pins (sam-cli, localstack, schemathesis)
# conflict with each other. Venvs live under ${MSGSVC_TOOLS:-$HOME/.cache/msgsvc/tools}.
set -euo pipefail
name="$1" python="$2"
shift 2
root="${MSGSVC_TOOLS:-$HOME/.cache/msgsvc/tools}"
venv="$root/$name"
stamp="$venv/.requirements"
wanted="$(printf '%s\n' "$@")"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
  case "$python" in
    /*) py="$python" ;;
    *) py="$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$python"*/bin/python3 2>/dev/null | sort -V | tail -1)" ;;
  esac
  [ -x "${py:-}" ] || py="$(command -v "python$python" || command -v python3)"
  rm -rf "$venv"
  "$py" -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check "$@" >&2
  printf '%s' "$wanted" > "$stamp"
fi
echo "$venv/bin"
