#!/bin/sh
# The dashboard's set-up: Debian's chromium and chromium-driver (the browser tests), Selenium
# in the venv, the dashboard distribution, and the pinned mqtt.js, js-yaml and js-sha256 from npm copied into the
# dashboard's static folder (served locally: the page needs no internet).
# Idempotent; CI runs it as root in a fresh clone.
set -eu
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
DASH=services/dashboard
VENDOR=$DASH/src/fogmesh/dashboard/static/vendor

# FOGMESH_DASHBOARD_LIBS_ONLY=1 (dev.sh up): only npm and the page's libraries, no browser
missing=""
if [ -z "${FOGMESH_DASHBOARD_LIBS_ONLY:-}" ]; then
    command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
    command -v chromedriver >/dev/null 2>&1 || missing="$missing chromium-driver"
fi
command -v npm >/dev/null 2>&1 || missing="$missing npm"
if [ -n "$missing" ]; then
    if [ "$(id -u)" -eq 0 ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q
        # shellcheck disable=SC2086
        apt-get install -y -q --no-install-recommends $missing
    else
        echo ".ci/dashboard.sh: please install:$missing" >&2
    fi
fi

if [ ! -f "$VENDOR/mqtt.min.js" ] || [ ! -f "$VENDOR/js-yaml.min.js" ] || [ ! -f "$VENDOR/sha256.min.js" ] || ! cmp -s "$DASH/package-lock.json" "$VENDOR/.lock"; then
    (cd "$DASH" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
    mkdir -p "$VENDOR"
    cp "$DASH/node_modules/mqtt/dist/mqtt.min.js" "$VENDOR/mqtt.min.js"
    cp "$DASH/node_modules/js-yaml/dist/js-yaml.min.js" "$VENDOR/js-yaml.min.js"
    cp "$DASH/node_modules/js-sha256/build/sha256.min.js" "$VENDOR/sha256.min.js"
    cp "$DASH/package-lock.json" "$VENDOR/.lock"
fi

if [ -x "$VENV/bin/python" ] && [ -z "${FOGMESH_DASHBOARD_LIBS_ONLY:-}" ]; then
    "$VENV/bin/python" -m pip show -q fogmesh-dashboard >/dev/null 2>&1 \
        || "$VENV/bin/python" -m pip install -q -e "$DASH"
    "$VENV/bin/python" -m pip show -q selenium >/dev/null 2>&1 \
        || "$VENV/bin/python" -m pip install -q "selenium==4.27.1"
fi
