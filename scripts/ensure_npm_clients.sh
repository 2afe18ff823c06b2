#!/usr/bin/env bash
# Install the outside MCP clients the tests drive (tests/mcp_clients: the TypeScript
# SDK and the Inspector CLI) exactly as the lockfile pins them. On a fresh Debian
# machine, as root, this installs node and npm from Debian first.
set -euo pipefail
cd "$(dirname "$0")/../tests/mcp_clients"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
        echo "node and npm are needed for the MCP client tests: apt-get install nodejs npm" >&2
        exit 1
    fi
    echo "installing nodejs npm with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq nodejs npm >/dev/null
fi
npm ci --no-audit --no-fund
touch node_modules/.package-lock.json
