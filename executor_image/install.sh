#!/bin/sh
# Installs the session's requirements into /opt/venv at image build time.
# uv when the base image has it, pip otherwise. index.env carries the host's
# package-index settings (never file:// indexes, which do not exist in here).
set -eu
cd /opt/codeexec/build
. ./index.env
if ! grep -q '[^[:space:]]' requirements.txt; then
    echo "no dependencies to install"
    exit 0
fi
if command -v uv >/dev/null 2>&1; then
    uv pip install --python /opt/venv/bin/python --no-cache -r requirements.txt
else
    /opt/venv/bin/python -m pip install --no-cache-dir --disable-pip-version-check \
        --no-input --progress-bar off -r requirements.txt
fi
