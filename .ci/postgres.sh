#!/bin/sh
# Make a PostgreSQL server available for the registry's tests (`@pytest.mark.postgres`).
# Idempotent; CI runs it as root in a fresh clone:
#   * installs postgresql with apt when pg_ctlcluster is missing,
#   * starts (creating if needed) the Debian cluster "main" of the newest installed version,
#   * creates role fogmesh (password fogmesh) and database fogmesh_test owned by it,
#   * prints `export FOGMESH_TEST_PG_URL=...` on stdout (everything else goes to stderr),
#     so use it as:   eval "$(.ci/postgres.sh)"
#     and appends the variable to $GITHUB_ENV when that is set.
set -eu

say() { echo "postgres.sh: $*" >&2; }

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    say "installing postgresql"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2
    apt-get install -y -q --no-install-recommends postgresql >&2
fi

version=$(ls /usr/lib/postgresql | sort -n | tail -n 1)
cluster=main
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$version $cluster"; then
    say "creating cluster $version/$cluster"
    pg_createcluster "$version" "$cluster" >&2
fi
if ! pg_lsclusters -h | awk -v v="$version" -v c="$cluster" '$1==v && $2==c {print $4}' | grep -q online; then
    say "starting cluster $version/$cluster"
    pg_ctlcluster "$version" "$cluster" start >&2
fi
port=$(pg_lsclusters -h | awk -v v="$version" -v c="$cluster" '$1==v && $2==c {print $3}')

i=0
until su postgres -c "psql -p $port -Atqc 'select 1'" >/dev/null 2>&1; do
    i=$((i + 1))
    if [ "$i" -ge 60 ]; then
        say "the server on port $port does not answer after 30s"
        exit 1
    fi
    sleep 0.5
done

psql_su() { su postgres -c "psql -p $port -v ON_ERROR_STOP=1 -Atq $*"; }
if [ "$(psql_su "-c \"select 1 from pg_roles where rolname='fogmesh'\"")" != "1" ]; then
    say "creating role fogmesh"
    psql_su "-c \"create role fogmesh login password 'fogmesh'\"" >&2
fi
if [ "$(psql_su "-c \"select 1 from pg_database where datname='fogmesh_test'\"")" != "1" ]; then
    say "creating database fogmesh_test"
    psql_su "-c \"create database fogmesh_test owner fogmesh\"" >&2
fi

url="postgresql://fogmesh:fogmesh@127.0.0.1:$port/fogmesh_test"
say "ready: $url"
if [ -n "${GITHUB_ENV:-}" ]; then
    echo "FOGMESH_TEST_PG_URL=$url" >>"$GITHUB_ENV"
fi
echo "export FOGMESH_TEST_PG_URL=$url"
