#!/bin/sh
# Node.js, and Node-RED 4.x with node-red-contrib-fogmesh's dev dependencies, for
# tests/nodered/ and the package's `npm test`. Idempotent: installs Node.js only when `node`
# is missing or older than 18, and runs `npm ci` in integrations/node-red only when its
# package-lock.json changed since the last install. Node-RED is pinned (4.1.x: Node-RED 5 needs
# Node >= 22.9, Debian 12 has 18, this machine 20) and lives in
# integrations/node-red/node_modules, never in a global folder; the tests use that one copy.
set -eu
cd "$(dirname "$0")/../integrations/node-red"
# Parallel test workers may call this at once: one `npm ci` in this folder at a time (the lock
# lives outside node_modules, which npm ci deletes), and the ones that waited find it done.
if command -v flock >/dev/null 2>&1; then
    exec 9>"${TMPDIR:-/tmp}/fogmesh-nodered-$(pwd | sha256sum | cut -c1-16).lock"
    flock 9
fi

node_major() { node -e 'process.stdout.write(process.versions.node.split(".")[0])' 2>/dev/null || echo 0; }
if ! command -v npm >/dev/null 2>&1 || [ "$(node_major)" -lt 18 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends nodejs npm
fi

stamp=node_modules/.fogmesh-lock.sha256
want="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -f node_modules/node-red/red.js ]; then
    echo "node-red: $(node -p 'require("./node_modules/node-red/package.json").version') already installed"
    exit 0
fi
npm ci --no-audit --no-fund --loglevel=error
echo "$want" > "$stamp"
echo "node-red: $(node -p 'require("./node_modules/node-red/package.json").version') installed"
