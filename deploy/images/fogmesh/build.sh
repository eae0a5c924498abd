#!/bin/sh
# Build the fogmesh service images on this machine without pulling from any image registry:
#
#   fogmesh/platform:latest    every fogmesh package and its dependencies on Python 3.11
#   fogmesh/broker:latest      python3 -m fogmesh.broker      (embedded amqtt broker, site links)
#   fogmesh/registry:latest    python3 -m fogmesh.registry
#   fogmesh/scheduler:latest   python3 -m fogmesh.scheduler
#   fogmesh/migrator:latest    python3 -m fogmesh.migrator
#   fogmesh/agent:latest       python3 -m fogmesh.agent
#   fogmesh/cli:latest         python3 -m fogmesh.cli         (the operator's `fogmesh`)
#   fogmesh/nats:latest        the host's nats-server (Debian's, libc only) for a cluster member
#
# The base is the sample app's image (deploy/images/sample-app/build.sh: Debian's python3.11
# unpacked into a rootfs and `docker import`ed); `docker build` finds it locally, so no FROM is
# ever pulled. The third-party wheels are installed with pip into a directory (`--target`) at
# the versions this checkout's venv runs (its `pip freeze` is the constraints file), the fogmesh
# sources are copied as they are (fogmesh is a namespace package over all the distributions).
#
# Idempotent: each image carries org.fogmesh.content-hash (this script, the sources, the
# constraints, the base image id); an image whose hash matches is kept. FM_REBUILD=1 forces.
# FM_PYTHON is the Python 3.11 whose pip installs the wheels (default: the repo's .venv).
# Needs: a running Docker engine, network to PyPI (first build), the sample app's build needs.
# Prints the tags on stdout; progress goes to stderr.
set -eu

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"
CACHE="${FM_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fogmesh/platform}"
PY="${FM_PYTHON:-}"
if [ -z "$PY" ]; then
    if [ -x "$REPO/.venv/bin/python" ]; then PY="$REPO/.venv/bin/python"; else PY=python3; fi
fi
NATS="${FM_NATS_SERVER:-$(command -v nats-server || echo /usr/sbin/nats-server)}"
# name:module of each service image
SERVICES="broker:fogmesh.broker registry:fogmesh.registry scheduler:fogmesh.scheduler \
migrator:fogmesh.migrator agent:fogmesh.agent cli:fogmesh.cli"

log() { echo "build.sh: $*" >&2; }

mkdir -p "$CACHE"
if command -v flock >/dev/null 2>&1; then
    exec 9>"$CACHE/.build.lock"
    flock 9
fi

base="$(sh "$REPO/deploy/images/sample-app/build.sh" | tail -n 1)"
base_id="$(docker image inspect --format '{{ .Id }}' "$base")"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/fogmesh-platform-image.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT INT TERM
# The third-party requirements: every distribution's dependencies and optional dependencies
# (PostgreSQL's driver is one), the fogmesh ones left out (their sources are copied).
REQUIREMENTS="$(
    "$PY" - "$REPO" <<'PYTHON'
import sys, tomllib
from pathlib import Path

repo = Path(sys.argv[1])
reqs = set()
for pyproject in [repo / "pyproject.toml", *repo.glob("*/pyproject.toml"), *repo.glob("services/*/pyproject.toml")]:
    project = tomllib.loads(pyproject.read_text()).get("project", {})
    extras = [r for name, rs in project.get("optional-dependencies", {}).items() if name != "dev" for r in rs]
    reqs.update(r.replace(" ", "") for r in [*project.get("dependencies", []), *extras])
print(" ".join(sorted(r for r in reqs if not r.lower().startswith("fogmesh"))))
PYTHON
)"
log "requirements: $REQUIREMENTS"
"$PY" -m pip freeze --exclude-editable 2>/dev/null | grep -v '^-e ' | grep -v '^fogmesh' \
    >"$WORK/constraints.txt"

# The fogmesh sources: every distribution's src/fogmesh/<package>.
mkdir -p "$WORK/ctx/fogmesh"
for src in "$REPO"/protocol/src/fogmesh "$REPO"/broker/src/fogmesh "$REPO"/cli/src/fogmesh \
    "$REPO"/services/*/src/fogmesh; do
    cp -r "$src/." "$WORK/ctx/fogmesh/"
done
find "$WORK/ctx/fogmesh" -name '__pycache__' -type d -prune -exec rm -rf {} +

hash="$(
    {
        sha256sum "$HERE/build.sh"
        echo "base=$base_id requirements=$REQUIREMENTS services=$SERVICES"
        sha256sum "$WORK/constraints.txt" "$NATS"
        (cd "$WORK/ctx" && find fogmesh -type f | LC_ALL=C sort | xargs sha256sum)
    } | sha256sum | cut -c1-32
)"
have() {
    [ "${FM_REBUILD:-0}" != "1" ] && [ "$(docker image inspect --format \
        '{{ index .Config.Labels "org.fogmesh.content-hash" }}' "$1" 2>/dev/null || true)" = "$hash" ]
}

if have fogmesh/platform:latest; then
    log "fogmesh/platform:latest is up to date (content hash $hash)"
else
    start="$(date +%s)"
    site="$CACHE/site-$({ cat "$WORK/constraints.txt"; echo "$REQUIREMENTS"; } | sha256sum | cut -c1-16)"
    if [ ! -d "$site" ]; then
        log "installing the dependencies with $PY -m pip into $site"
        # shellcheck disable=SC2086
        "$PY" -m pip install -q --no-compile --only-binary=:all: --target "$site.tmp" \
            -c "$WORK/constraints.txt" $REQUIREMENTS >&2
        rm -rf "$site.tmp/bin"
        mv "$site.tmp" "$site"
    fi
    mkdir -p "$WORK/ctx/site"
    cp -r "$site/." "$WORK/ctx/site/"
    cp -r "$WORK/ctx/fogmesh/." "$WORK/ctx/site/fogmesh/"
    rm -rf "$WORK/ctx/fogmesh"
    cat >"$WORK/ctx/Dockerfile" <<DOCKERFILE
FROM $base
COPY site/ /usr/lib/python3/dist-packages/
RUN ["python3", "-m", "compileall", "-q", "/usr/lib/python3/dist-packages"]
ENV FOGMESH_IN_IMAGE=1
LABEL org.fogmesh.content-hash=$hash
CMD ["python3", "-m", "fogmesh.cli", "--help"]
DOCKERFILE
    log "docker build -> fogmesh/platform:latest"
    docker build -q -t fogmesh/platform:latest "$WORK/ctx" >&2
    log "built fogmesh/platform:latest in $(($(date +%s) - start))s"
fi
echo fogmesh/platform:latest

# One thin image per service (its entry point), and the NATS member.
mkdir -p "$WORK/svc"
for pair in $SERVICES; do
    name="${pair%%:*}"
    module="${pair#*:}"
    tag="fogmesh/$name:latest"
    if ! have "$tag"; then
        printf 'FROM fogmesh/platform:latest\nENTRYPOINT ["python3", "-m", "%s"]\nCMD []\nLABEL org.fogmesh.content-hash=%s\n' \
            "$module" "$hash" | docker build -q -t "$tag" - >&2
        log "built $tag"
    fi
    echo "$tag"
done
if ! have fogmesh/nats:latest; then
    cp "$NATS" "$WORK/svc/nats-server"
    printf 'FROM fogmesh/platform:latest\nCOPY nats-server /usr/sbin/nats-server\nENTRYPOINT ["/usr/sbin/nats-server"]\nCMD []\nLABEL org.fogmesh.content-hash=%s\n' \
        "$hash" >"$WORK/svc/Dockerfile"
    docker build -q -t fogmesh/nats:latest "$WORK/svc" >&2
    log "built fogmesh/nats:latest"
fi
echo fogmesh/nats:latest
