#!/bin/sh
# Make a Docker engine, busybox-static and docker-registry available for the Docker tests.
# Idempotent: installs only what is missing, starts dockerd only when `docker info` fails,
# then waits until the engine answers. CI runs this as root in a fresh clone.
set -eu

missing=""
command -v docker >/dev/null 2>&1 || missing="$missing docker.io"
[ -x /bin/busybox ] || missing="$missing busybox-static"
command -v docker-registry >/dev/null 2>&1 || missing="$missing docker-registry"
if [ -n "$missing" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $missing
fi

if ! docker info >/dev/null 2>&1; then
    echo "starting dockerd (log: /tmp/dockerd.log)"
    nohup dockerd >/tmp/dockerd.log 2>&1 &
    i=0
    until docker info >/dev/null 2>&1; do
        i=$((i + 1))
        if [ "$i" -ge 120 ]; then
            echo "dockerd did not answer within 60s; last log lines:" >&2
            tail -n 30 /tmp/dockerd.log >&2 || true
            exit 1
        fi
        sleep 0.5
    done
fi
docker version --format 'docker engine {{.Server.Version}} (API {{.Server.APIVersion}}) is up'
