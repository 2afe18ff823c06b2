#!/bin/sh
# Installs the session's requirements into /opt/venv. codeexec/images.py runs it in
# a confined container (the build user 10002, no capabilities, the session's limits)
# and commits the result as the session image. uv when the base image has it, pip
# otherwise. index.env carries the host's package-index settings (never file://
# indexes, which do not exist in here); proxy settings arrive as NAME=value lines on
# stdin, so they are on no command line and in no image.
set -eu
while IFS= read -r line; do
    case "$line" in
        HTTP_PROXY=*|HTTPS_PROXY=*|NO_PROXY=*|http_proxy=*|https_proxy=*|no_proxy=*)
            export "$line" ;;
    esac
done
cd /opt/codeexec/build
. ./index.env
if ! grep -q '[^[:space:]]' requirements.txt; then
    echo "no dependencies to install"
    exit 0
fi
# Scratch space on disk (a wheel can be larger than the /tmp tmpfs), gone before commit.
export HOME=/tmp
TMPDIR="$(mktemp -d /var/tmp/codeexec-build.XXXXXX)"
export TMPDIR
trap 'rm -rf "$TMPDIR"' EXIT
if command -v uv >/dev/null 2>&1; then
    uv pip install --python /opt/venv/bin/python --no-cache -r requirements.txt
else
    /opt/venv/bin/python -m pip install --no-cache-dir --disable-pip-version-check \
        --no-input --progress-bar off -r requirements.txt
fi
