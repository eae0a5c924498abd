#!/bin/sh
# What the deploy/ tests (tests/deploy) need beyond Docker: docker-compose (Debian's 1.29.2) for
# the compose files, and systemd-analyze (package systemd) to verify the units.
# Idempotent: installs only what is missing. CI runs it as root in a fresh clone, after docker.sh.
set -eu

missing=""
command -v docker-compose >/dev/null 2>&1 || missing="$missing docker-compose"
command -v systemd-analyze >/dev/null 2>&1 || missing="$missing systemd"
if [ -n "$missing" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $missing
fi
echo "docker-compose $(docker-compose version --short), $(systemd-analyze --version | head -n 1)"
