#!/usr/bin/env bash
# The lowest and highest supported Pythons (3.10 and 3.13, pyproject's classifiers):
# for each, a virtualenv .venv-3.X with the project and its dev tools, the unit tests,
# and end-to-end sessions against the real engine (CLI and MCP). `make test-pythons`.
#
# Where the interpreters come from (measured on this project's machines): python3.X
# on PATH, else pyenv's builds ($PYENV_ROOT or ~/.pyenv/versions/3.X.*), which the
# project's machines carry. Nothing else reachable provides them: Debian bookworm has
# only 3.11, and `uv python install` / `pyenv install` download from hosts that
# these machines cannot reach.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSIONS="${PYTHONS:-3.10 3.13}"
# The dev tools keep Typer 0.28 (docs/cli.md is its --help); the highest Python runs
# with the newest Typer instead, as a user who installs codeexec next to other tools
# may have it. Only the check that docs/cli.md matches --help is about the version.
NEWEST_TYPER_ON="${NEWEST_TYPER_ON:-3.13}"
# One end-to-end pass each: a CLI session (state, timeout, JSON) and the MCP server.
E2E=(
    "tests/integration/test_cli_e2e.py::test_state_persists_across_invocations"
    "tests/integration/test_cli_e2e.py::test_timeout_exits_124_and_keeps_state"
    "tests/integration/test_cli_e2e.py::test_json_outputs_parse"
    "tests/integration/test_session.py::test_value_streams_and_child_process_output"
    "tests/integration/test_mcp_stdio.py"
)

find_python() {
    local v="$1" root="${PYENV_ROOT:-$HOME/.pyenv}" found
    # A pyenv shim answers to every name and fails when that version is not selected:
    # a candidate counts only when it runs.
    for found in "$(command -v "python$v" || true)" \
        "$(ls -d "$root"/versions/"$v".*/bin/python"$v" 2>/dev/null | sort -V | tail -n1 || true)"; do
        if [ -n "$found" ] && "$found" -c 'import venv, ssl' >/dev/null 2>&1; then
            echo "$found"
            return
        fi
    done
    echo "no Python $v: not on PATH and not in $root/versions; this machine reaches no" \
         "source of it (Debian bookworm ships 3.11 only; uv and pyenv download from" \
         "hosts outside the package registries)" >&2
    return 1
}

for v in $VERSIONS; do
    py="$(find_python "$v")"
    venv=".venv-$v"
    echo "== Python $v: $py ($venv)"
    if [ ! -x "$venv/bin/codeexec" ] || [ pyproject.toml -nt "$venv/bin/codeexec" ]; then
        "$py" -m venv --clear "$venv"
        "$venv/bin/pip" install -q --upgrade pip
        "$venv/bin/pip" install -q -e '.[dev]'
        touch "$venv/bin/codeexec"
    fi
    deselect=()
    if [ "$v" = "$NEWEST_TYPER_ON" ]; then
        "$venv/bin/pip" install -q --upgrade typer
        deselect=(--deselect tests/test_cli.py::test_cli_docs_are_up_to_date)
    fi
    "$venv/bin/python" -c 'import sys, typer; print(sys.version, "typer", typer.__version__)'
    "$venv/bin/pytest" -q -p no:cacheprovider -m "not docker" "${deselect[@]}"
    "$venv/bin/pytest" -q -p no:cacheprovider --require-docker "${E2E[@]}"
done
