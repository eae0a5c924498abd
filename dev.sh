#!/usr/bin/env bash
# fogmesh's one way in, for people and CI alike.
#   bash dev.sh up [--nodes N]   set everything up, then run a whole fleet on this machine
#   bash dev.sh test             set everything up, then run ruff, mypy --strict and every test
#   bash dev.sh setup            only the set-up (system packages when root, the venv)
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
VENV="$ROOT/.venv"
PY=${PYTHON:-python3}

# Debian packages: the brokers, the container engine, the database, test images, netns tools.
RUN_PACKAGES="mosquitto mosquitto-clients"
TEST_PACKAGES="mosquitto mosquitto-clients nats-server docker.io busybox-static docker-registry postgresql iproute2 nftables procps"

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "dev.sh: please install: ${missing[*]}" >&2
    return 0
  fi
  echo "dev.sh: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

setup_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
  fi
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1
  local stamp="$VENV/.fogmesh-installed"
  local digest
  digest=$(cat pyproject.toml */pyproject.toml services/*/pyproject.toml examples/*/pyproject.toml 2>/dev/null | sha256sum | cut -c1-16)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ]; then
    return 0
  fi
  local editables=(-e protocol)
  for dir in broker services/registry services/scheduler services/migrator services/node-agent services/dashboard services/artefacts examples/sensor-app; do
    [ -f "$dir/pyproject.toml" ] && editables+=(-e "$dir")
  done
  [ -f services/registry/pyproject.toml ] && editables+=(-e "services/registry[postgres]")
  # (this machine's pip configuration names local mirrors that may be absent: quiet about those)
  "$VENV/bin/python" -m pip install -q "${editables[@]}" -e ".[dev]" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
  echo "$digest" > "$stamp"
}

lint() {
  "$VENV/bin/ruff" check .
  "$VENV/bin/mypy" --strict protocol/src broker/src services/*/src cli/src tests bench examples/sensor-app/fogmesh_sample
}

run_tests() {
  bash .ci/docker.sh
  # shellcheck disable=SC1091
  eval "$(bash .ci/postgres.sh)"
  export FOGMESH_TEST_PG_URL
  # FOGMESH_TEST_WORKERS=N runs N pytest-xdist workers (unset or 0: serial); tests sharing a
  # fixed resource carry @pytest.mark.xdist_group, so --dist loadgroup keeps them on one worker
  local workers=()
  if [ "${FOGMESH_TEST_WORKERS:-0}" != "0" ]; then
    workers=(-n "$FOGMESH_TEST_WORKERS" --dist loadgroup)
  fi
  set +e
  "$VENV/bin/python" -m pytest -q --tb=native -p no:cacheprovider --durations=15 "${workers[@]}" "$@"
  local rc=$?
  set -e
  if [ $rc -eq 5 ]; then
    echo "dev.sh: pytest collected no tests; that is a failure" >&2
    return 1
  fi
  return $rc
}

cmd=${1:-up}
shift || true
case "$cmd" in
  setup)
    apt_install $TEST_PACKAGES
    setup_venv
    sh .ci/dashboard.sh
    sh .ci/nodered.sh
    sh .ci/compose.sh
    ;;
  up)
    apt_install $RUN_PACKAGES
    # --profile cluster runs the cloud tier on a NATS cluster and PostgreSQL
    case " $* " in *" cluster "*|*"--profile=cluster"*) apt_install nats-server postgresql ;; esac
    setup_venv
    # the dashboard's pinned browser libraries (npm), served by fogmesh up's dashboard
    FOGMESH_DASHBOARD_LIBS_ONLY=1 sh .ci/dashboard.sh
    if docker info >/dev/null 2>&1; then
      bash deploy/images/sample-app/build.sh >/dev/null || echo "dev.sh: sample image build failed; native runtime only" >&2
    fi
    exec "$VENV/bin/fogmesh" up "$@"
    ;;
  lint)
    setup_venv
    lint
    ;;
  test)
    apt_install $TEST_PACKAGES
    setup_venv
    # the browser and mqtt.js for tests/dashboard, Node-RED 4.x for tests/nodered,
    # docker-compose and systemd-analyze for tests/deploy
    sh .ci/dashboard.sh
    sh .ci/nodered.sh
    sh .ci/compose.sh
    lint
    run_tests "$@"
    ;;
  *)
    echo "usage: bash dev.sh up [--nodes N] | test | setup | lint" >&2
    exit 2
    ;;
esac
