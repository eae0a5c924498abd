#!/bin/sh
# Install the fogmesh node agent on this machine and join it to the fleet with a bootstrap
# token (docs/security.md, "Joining a node with a token"):
#
#   fogmesh node token --node edge-7 --ttl 20m          # on the operator's machine: ID.SECRET
#   sudo sh install.sh --token ID.SECRET --broker-host site-a.example.net --broker-port 8883 \
#       --tls --ca-file ca.pem --node-id edge-7 --site site-a
#
# What it does (ROOT is / unless --root is given):
#   1. the agent in ROOT/opt/fogmesh: a venv with fogmesh-node-agent pip-installed from
#      --source (a fogmesh checkout, default the one holding this script, or a directory of
#      wheels); or, with --python PY, a wrapper running `PY -m fogmesh.agent` for an interpreter
#      that already has the agent (an image, a test);
#   2. ROOT/etc/fogmesh/agent.yaml (broker, node id, site, labels, state dir) and
#      ROOT/etc/fogmesh/agent.env (FOGMESH_JOIN_TOKEN=..., mode 0600);
#   3. ROOT/etc/systemd/system/fogmesh-agent.service (deploy/systemd), enabled and started with
#      systemctl unless --no-start, --root or no running systemd.
# On its first start the agent redeems the token at the broker and keeps the credential it gets
# (node-credential.json, 0600, in its state dir); the token is then spent and not needed again.
# Idempotent: running it again rewrites the files and restarts the agent.
set -eu

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT=/
TOKEN=""
HOST=""
PORT=1883
NODE=""
SITE=""
TLS=0
CA=""
RUNTIMES="docker,native"
STATE=/var/lib/fogmesh-agent
SOURCE="$(cd "$HERE/../.." && pwd)"
PY=""
START=1
LABELS=""

usage() {
    sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//' >&2
    echo "options: --token T --broker-host H [--broker-port P] [--node-id N] [--site S] [--tls]" >&2
    echo "  [--ca-file F] [--runtimes docker,native] [--label K=V]... [--state-dir D]" >&2
    echo "  [--source DIR] [--python PY] [--root DIR] [--no-start]" >&2
    exit 2
}
need() { [ "$#" -ge 2 ] || usage; }
while [ "$#" -gt 0 ]; do
    case "$1" in
    --token) need "$@"; TOKEN="$2"; shift 2 ;;
    --broker-host) need "$@"; HOST="$2"; shift 2 ;;
    --broker-port) need "$@"; PORT="$2"; shift 2 ;;
    --node-id) need "$@"; NODE="$2"; shift 2 ;;
    --site) need "$@"; SITE="$2"; shift 2 ;;
    --tls) TLS=1; shift ;;
    --ca-file) need "$@"; CA="$2"; shift 2 ;;
    --runtimes) need "$@"; RUNTIMES="$2"; shift 2 ;;
    --label) need "$@"; LABELS="$LABELS $2"; shift 2 ;;
    --state-dir) need "$@"; STATE="$2"; shift 2 ;;
    --source) need "$@"; SOURCE="$2"; shift 2 ;;
    --python) need "$@"; PY="$2"; shift 2 ;;
    --root) need "$@"; ROOT="$2"; shift 2 ;;
    --no-start) START=0; shift ;;
    -h | --help) usage ;;
    *) echo "install.sh: unknown option $1" >&2; usage ;;
    esac
done
[ -n "$HOST" ] || { echo "install.sh: --broker-host is required" >&2; exit 2; }
case "$PORT" in *[!0-9]* | "") echo "install.sh: bad --broker-port $PORT" >&2; exit 2 ;; esac
# one id: letters, digits, - _ . (the fleet's id rule); nothing that could break the YAML
for v in "$NODE" "$SITE"; do
    case "$v" in *[!A-Za-z0-9._-]*) echo "install.sh: bad id '$v'" >&2; exit 2 ;; esac
done
case "$TOKEN" in *[!A-Za-z0-9._-]*) echo "install.sh: bad token" >&2; exit 2 ;; esac
case "$RUNTIMES" in *[!a-z,]* | "") echo "install.sh: bad --runtimes $RUNTIMES" >&2; exit 2 ;; esac

log() { echo "install.sh: $*" >&2; }
# a JSON string (backslashes and double quotes escaped); a word for sh (in single quotes)
json() { printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"; }
shquote() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }
ROOT="${ROOT%/}"
OPT="$ROOT/opt/fogmesh"
ETC="$ROOT/etc/fogmesh"
UNITS="$ROOT/etc/systemd/system"
mkdir -p "$OPT/bin" "$ETC" "$UNITS"

# --- 1. the agent ------------------------------------------------------------------------------
if [ -n "$PY" ]; then
    # the unit runs it from / : an absolute path (not resolved: a venv's python is a symlink)
    case "$PY" in
    /*) ;;
    */*) PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")" ;;
    *) PY="$(command -v "$PY")" ;;
    esac
    "$PY" -c 'import fogmesh.agent' || { echo "install.sh: $PY has no fogmesh.agent" >&2; exit 1; }
    printf '#!/bin/sh\nexec %s -m fogmesh.agent "$@"\n' "$(shquote "$PY")" >"$OPT/bin/fogmesh-agent"
    chmod 0755 "$OPT/bin/fogmesh-agent"
    log "wrapper $OPT/bin/fogmesh-agent -> $PY -m fogmesh.agent"
else
    python3 -m venv "$OPT"
    if [ -f "$SOURCE/services/node-agent/pyproject.toml" ]; then
        "$OPT/bin/pip" install -q "$SOURCE/protocol" "$SOURCE/services/node-agent"
    else
        "$OPT/bin/pip" install -q --find-links "$SOURCE" fogmesh-node-agent
    fi
    log "installed fogmesh-node-agent into $OPT"
fi

# --- 2. the configuration --------------------------------------------------------------------
# agent.yaml in JSON syntax (JSON is YAML, edit it as either): the agent reads a file it can
# parse as JSON without loading PyYAML, 1 MB resident it would keep (docs/agent.md, "Memory")
umask 077
{
    echo "{"
    echo "  \"state_dir\": $(json "$STATE"),"
    [ -n "$NODE" ] && echo "  \"node_id\": \"$NODE\","
    [ -n "$SITE" ] && echo "  \"site\": \"$SITE\","
    printf '  "broker": {"host": %s, "port": %s' "$(json "$HOST")" "$PORT"
    if [ "$TLS" = 1 ]; then
        printf ', "tls": true'
        [ -n "$CA" ] && printf ', "ca_file": %s' "$(json "$CA")"
    fi
    echo "},"
    echo "  \"runtimes\": [\"$(echo "$RUNTIMES" | sed 's/,/", "/g')\"],"
    # the site first, the operator's labels, the install marker last: a duplicate key's last
    # value wins, so no --label overrides the marker
    printf '  "labels": {'
    [ -n "$SITE" ] && printf '"site": "%s", ' "$SITE"
    for kv in $LABELS; do
        k="${kv%%=*}"
        v="${kv#*=}"
        case "$k" in *[!A-Za-z0-9._/-]* | "") echo "install.sh: bad label $kv" >&2; exit 2 ;; esac
        printf '"%s": %s, ' "$k" "$(json "$v")"
    done
    echo '"fogmesh.install": "agent"}'
    echo "}"
} >"$ETC/agent.yaml"
printf 'FOGMESH_JOIN_TOKEN=%s\n' "$TOKEN" >"$ETC/agent.env"
chmod 0600 "$ETC/agent.env" "$ETC/agent.yaml"
umask 022
cp "$HERE/../systemd/fogmesh-agent.service" "$UNITS/fogmesh-agent.service"
chmod 0644 "$UNITS/fogmesh-agent.service"
log "wrote $ETC/agent.yaml, $ETC/agent.env and $UNITS/fogmesh-agent.service"

# --- 3. start ------------------------------------------------------------------------------------
if [ "$START" = 1 ] && [ "$ROOT" = "" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable fogmesh-agent.service
    systemctl restart fogmesh-agent.service
    log "fogmesh-agent started (journalctl -u fogmesh-agent)"
else
    # by hand as the unit runs it: with the unit's Environment= settings and the token file
    UNIT_ENV="$(sed -n 's/^Environment=//p' "$UNITS/fogmesh-agent.service" | tr '\n' ' ')"
    log "not started (run: ${UNIT_ENV}$OPT/bin/fogmesh-agent --config $ETC/agent.yaml" \
        "with $ETC/agent.env)"
fi
