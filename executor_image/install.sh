#!/bin/sh
# Installs the session's requirements into /opt/venv. codeexec/images.py runs it in
# a confined container (the build user 10002, no capabilities, the session's limits)
# and commits the result as the session image. uv when the base image has it, pip
# otherwise. index.env carries the host's package-index settings (never file://
# indexes, which do not exist in here); proxy settings arrive as NAME=value lines on
# stdin, so they are on no command line and in no image. The requirements arrive
# there too, as REQUIREMENT=... lines: the image may be an earlier env image whose
# requirements.txt names a subset (pip then installs only the difference).
set -eu
# Scratch space on disk (a wheel can be larger than the /tmp tmpfs), gone before commit.
export HOME=/tmp
TMPDIR="$(mktemp -d /var/tmp/codeexec-build.XXXXXX)"
export TMPDIR
trap 'rm -rf "$TMPDIR"' EXIT
REQUIREMENTS="$TMPDIR/requirements.txt"
: > "$REQUIREMENTS"
while IFS= read -r line; do
    case "$line" in
        HTTP_PROXY=*|HTTPS_PROXY=*|NO_PROXY=*|http_proxy=*|https_proxy=*|no_proxy=*)
            export "$line" ;;
        REQUIREMENT=*)
            printf '%s\n' "${line#REQUIREMENT=}" >> "$REQUIREMENTS" ;;
    esac
done
cd /opt/codeexec/build
. ./index.env
if ! grep -q '[^[:space:]]' "$REQUIREMENTS"; then
    echo "no dependencies to install"
    exit 0
fi
# The package cache: a volume shared by the builds on this base image, mounted here
# only when caching is on (codeexec/images.py); never part of the committed image.
CACHE=/opt/codeexec/cache
if command -v uv >/dev/null 2>&1; then
    if [ -w "$CACHE" ]; then
        echo "using the package cache $CACHE/uv"
        set -- --cache-dir "$CACHE/uv" --link-mode copy
    else
        set -- --no-cache
    fi
    uv pip install --python /opt/venv/bin/python "$@" -r "$REQUIREMENTS"
else
    pip() {
        /opt/venv/bin/python -m pip "$@" --disable-pip-version-check --no-input \
            --progress-bar off
    }
    if [ -w "$CACHE" ]; then
        # A wheelhouse, not pip's HTTP cache: that one keeps only what the index
        # marks cacheable, and proxies often strip those headers. Ties between the
        # wheelhouse and the index go to the wheelhouse; then install offline.
        echo "using the package cache $CACHE/pip-wheels"
        mkdir -p "$CACHE/pip-wheels"
        pip wheel --wheel-dir "$CACHE/pip-wheels" --find-links "$CACHE/pip-wheels" \
            --cache-dir "$CACHE/pip" -r "$REQUIREMENTS"
        pip install --no-index --find-links "$CACHE/pip-wheels" --no-cache-dir \
            -r "$REQUIREMENTS"
    else
        pip install --no-cache-dir -r "$REQUIREMENTS"
    fi
fi
