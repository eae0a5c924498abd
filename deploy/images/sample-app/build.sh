#!/bin/sh
# Build the sample app image `fogmesh/sample-app:latest` on this machine, without any image
# registry: Debian's python3.11 packages (bookworm) are downloaded with apt into a private apt
# root (the host's apt state is neither read nor changed), unpacked with `dpkg -x` into a rootfs,
# paho-mqtt (a pure-Python wheel from PyPI) and examples/sensor-app/fogmesh_sample are copied into
# /usr/lib/python3/dist-packages, and the rootfs is turned into an image with `docker import`.
#
# Idempotent: the image carries the label org.fogmesh.content-hash (a hash of this script, the app
# sources and the pinned paho version); when an image with the same tag and hash exists, nothing
# is done. FM_REBUILD=1 forces a rebuild. Downloads are cached in $FM_IMAGE_CACHE.
#
# Needs: sh, apt-get + apt-cache + dpkg-deb (any Debian-ish host), debian-archive-keyring, tar,
# sha256sum, python3 with pip (for the wheel download; $FM_PYTHON picks which python), a running
# Docker engine, network to deb.debian.org and PyPI. Root is not needed except for docker access;
# as root the stdlib is byte-compiled inside the rootfs (chroot) so containers start faster.
#
# Prints the tag on stdout as the last line; progress goes to stderr.
set -eu

TAG="${FM_IMAGE_TAG:-fogmesh/sample-app:latest}"
PAHO_VERSION="2.1.0"
SUITE="bookworm"
MIRROR="${FM_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${FM_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
KEYRING="${FM_DEBIAN_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}"
ROOTS="python3.11-minimal libpython3.11-stdlib"
# Pulled in by the dependency closure but useless in the image (perl via mailcap, dpkg, tar ...).
EXCLUDE="dpkg tar perl perl-base perl-modules-5.36 libperl5.36 libgdbm-compat4 mailcap \
mime-support install-info debconf"

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"
APP="$REPO/examples/sensor-app/fogmesh_sample"
CACHE="${FM_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fogmesh/sample-app}"

log() { echo "build.sh: $*" >&2; }

# --- content hash: what goes into the image, as far as this repository decides it ------------
hash="$(
    {
        sha256sum "$HERE/build.sh"
        echo "paho-mqtt==$PAHO_VERSION suite=$SUITE roots=$ROOTS exclude=$EXCLUDE"
        (cd "$APP/.." && find fogmesh_sample -name '*.py' -type f | LC_ALL=C sort | xargs sha256sum)
    } | sha256sum | cut -c1-32
)"

# Builds on one machine (parallel test workers, `dev.sh up`) share $CACHE's apt root and the
# image tag: one at a time, and a build that waited finds the image up to date.
mkdir -p "$CACHE"
if command -v flock >/dev/null 2>&1; then
    exec 9>"$CACHE/.build.lock"
    flock 9
fi

if [ "${FM_REBUILD:-0}" != "1" ]; then
    have="$(docker image inspect --format '{{ index .Config.Labels "org.fogmesh.content-hash" }}' \
        "$TAG" 2>/dev/null || true)"
    if [ "$have" = "$hash" ]; then
        log "$TAG is up to date (content hash $hash)"
        echo "$TAG"
        exit 0
    fi
fi

start="$(date +%s)"
old_id="$(docker image inspect --format '{{ .Id }}' "$TAG" 2>/dev/null || true)"
mkdir -p "$CACHE"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/fogmesh-sample-image.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT INT TERM

# --- 1. a private apt root for bookworm --------------------------------------------------------
A="$CACHE/apt"
mkdir -p "$A/lists/partial" "$A/archives/partial" "$A/prefs.d"
[ -f "$A/status" ] || : >"$A/status"
cat >"$A/sources.list" <<EOF
deb [signed-by=$KEYRING] $MIRROR $SUITE main
deb [signed-by=$KEYRING] $SECURITY_MIRROR $SUITE-security main
EOF
set -- \
    -o "Dir::State=$A" -o "Dir::State::Lists=$A/lists" -o "Dir::State::status=$A/status" \
    -o "Dir::Cache=$A" -o "Dir::Cache::archives=$A/archives" \
    -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache=" \
    -o "Dir::Etc::SourceList=$A/sources.list" -o "Dir::Etc::SourceParts=/dev/null" \
    -o "Dir::Etc::Preferences=/dev/null" -o "Dir::Etc::PreferencesParts=$A/prefs.d" \
    -o "APT::Architecture=$(dpkg --print-architecture)" -o "Debug::NoLocking=1" \
    -o "APT::Sandbox::User=root"
log "apt-get update (private root $A)"
apt-get "$@" -q update >&2

# The dependency closure of $ROOTS (Depends + Pre-Depends, first alternative), not walking into
# $EXCLUDE, one `apt-cache depends` per level.
keep=""
frontier="$ROOTS"
while [ -n "$frontier" ]; do
    keep="$keep $frontier"
    deps="$(
        apt-cache "$@" depends --no-recommends --no-suggests --no-conflicts --no-breaks \
            --no-replaces --no-enhances $frontier |
            awk '/^ *\|?(Pre)?Depends:/ { if (!alt) print $2; alt = ($1 ~ /^\|/) ; next } { alt = 0 }' |
            grep -v '^<' | LC_ALL=C sort -u
    )"
    frontier=""
    for p in $deps; do
        case " $EXCLUDE $keep $frontier " in *" $p "*) continue ;; esac
        frontier="$frontier $p"
    done
done
keep="$(echo $keep | tr ' ' '\n' | LC_ALL=C sort -u | tr '\n' ' ')"
log "packages:$keep"

# --- 2. download and unpack ---------------------------------------------------------------------
mkdir -p "$WORK/debs"
(cd "$WORK/debs" && apt-get "$@" -q download $keep >&2)
ROOTFS="$WORK/rootfs"
mkdir -p "$ROOTFS"
for deb in "$WORK"/debs/*.deb; do
    dpkg-deb -x "$deb" "$ROOTFS"
done

# usrmerge layout (bookworm): /bin, /lib, /lib64, /sbin point into /usr.
for d in bin lib lib64 sbin; do
    if [ -d "$ROOTFS/$d" ] && [ ! -L "$ROOTFS/$d" ]; then
        mkdir -p "$ROOTFS/usr/$d"
        cp -a "$ROOTFS/$d/." "$ROOTFS/usr/$d/"
        rm -rf "${ROOTFS:?}/$d"
    fi
    [ -e "$ROOTFS/$d" ] || ln -s "usr/$d" "$ROOTFS/$d"
done
ln -sf python3.11 "$ROOTFS/usr/bin/python3"
mkdir -p "$ROOTFS/tmp" "$ROOTFS/etc" "$ROOTFS/root" "$ROOTFS/proc" "$ROOTFS/sys" "$ROOTFS/dev"
chmod 1777 "$ROOTFS/tmp"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' \
    >"$ROOTFS/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$ROOTFS/etc/group"
# Trim what a headless MQTT worker never reads.
rm -rf "$ROOTFS/usr/share/doc" "$ROOTFS/usr/share/man" "$ROOTFS/usr/share/info" \
    "$ROOTFS/usr/share/lintian" "$ROOTFS/usr/share/locale" \
    "$ROOTFS/usr/lib/python3.11/test" "$ROOTFS/usr/lib/python3.11/idlelib" \
    "$ROOTFS/usr/lib/python3.11/tkinter" "$ROOTFS/usr/lib/python3.11/ensurepip" \
    "$ROOTFS/usr/lib/python3.11/lib2to3" "$ROOTFS/usr/lib/python3.11/pydoc_data"

# --- 3. paho-mqtt and the app ---------------------------------------------------------------------
SITE="$ROOTFS/usr/lib/python3/dist-packages"
mkdir -p "$SITE" "$CACHE/wheels"
wheel="$CACHE/wheels/paho_mqtt-$PAHO_VERSION-py3-none-any.whl"
if [ ! -f "$wheel" ]; then
    PY="${FM_PYTHON:-}"
    if [ -z "$PY" ]; then
        if [ -x "$REPO/.venv/bin/python" ]; then PY="$REPO/.venv/bin/python"; else PY=python3; fi
    fi
    log "downloading paho-mqtt==$PAHO_VERSION with $PY -m pip"
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
        -d "$CACHE/wheels" "paho-mqtt==$PAHO_VERSION" >&2
fi
# A wheel is a zip; unpack with Python's zipfile (no unzip needed on the host).
"${FM_PYTHON:-python3}" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' \
    "$wheel" "$SITE"
cp -r "$APP" "$SITE/fogmesh_sample"
find "$SITE" -name '__pycache__' -type d -prune -exec rm -rf {} +

# Byte-compile with the image's own interpreter when we can chroot (root), so every container
# start does not recompile the stdlib; otherwise the containers compile on the fly.
if [ "$(id -u)" = "0" ] && command -v chroot >/dev/null 2>&1; then
    chroot "$ROOTFS" /usr/bin/python3.11 -m compileall -q \
        /usr/lib/python3.11 /usr/lib/python3/dist-packages >&2 ||
        log "compileall failed (harmless: containers compile on the fly)"
fi

# --- 4. docker import ---------------------------------------------------------------------------
log "docker import -> $TAG"
tar -C "$ROOTFS" --numeric-owner --owner=0 --group=0 -cf - . |
    docker import \
        -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        -c 'ENV PYTHONUNBUFFERED=1' \
        -c 'ENV LANG=C.UTF-8' \
        -c 'WORKDIR /' \
        -c 'CMD ["python3", "-m", "fogmesh_sample.convolve"]' \
        -c "LABEL org.fogmesh.content-hash=$hash" \
        -c "LABEL org.fogmesh.paho-mqtt=$PAHO_VERSION" \
        -m "fogmesh sample app (convolver by default; python3 -m fogmesh_sample.sensor)" \
        - "$TAG" >&2

new_id="$(docker image inspect --format '{{ .Id }}' "$TAG")"
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
    # The previous build is now untagged; drop it unless a container still uses it.
    docker rmi "$old_id" >/dev/null 2>&1 || true
fi
size="$(docker image inspect --format '{{ .Size }}' "$TAG")"
log "built $TAG in $(($(date +%s) - start))s, $((size / 1000000)) MB, content hash $hash"
echo "$TAG"
