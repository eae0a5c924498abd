"""File work in a workload's directory done as the workload's own user, never as the agent.

A workload's ``work/`` belongs to its tenant's user, who may replace any path in it with a
symlink at any moment. Had the agent (root) written, unpacked or archived there itself, a
well-timed symlink would make it write or read any file on the node. So the agent runs these
steps as ``python -I -S native_user_io.py OP ...`` under the tenant's uid and gid with no
supplementary groups (started by file path: the standard library only, so without ``site``,
whose site-packages cost a helper more than its work on a loaded node; ``tarfile`` is imported
only by the steps that need it):

* ``write TARGET MODE``: stdin to ``TARGET`` (parents made, temporary file + rename);
* ``untar DEST``: the tar on stdin into ``DEST`` (``tarfile``'s ``data`` filter: no absolute
  paths, no links out of ``DEST``, no devices, no setuid bits);
* ``tar SOURCE NAME``: ``SOURCE`` as a tar on stdout, its members under ``NAME/``;
* ``mkdir DEST``: ``mkdir -p``;
* ``read TARGET LIMIT``: the regular file ``TARGET`` on stdout (at most ``LIMIT`` + 1 bytes).

Each function takes the owner to act as; ``None`` (the ``agent-user`` isolation) does the same
work in the agent's process. A failed step raises :class:`OSError` with the helper's message.
"""

# The helper works on plain strings and imports neither pathlib nor typing: the two alone
# took longer than a helper's start without them.
# ruff: noqa: PTH100, PTH101, PTH103, PTH105, PTH112, PTH118, PTH119
from __future__ import annotations

import io
import os
import stat
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from pathlib import Path
    from typing import BinaryIO

__all__ = ["Owner", "make_dirs", "pack", "read_file", "unpack", "write_file"]

_SELF = os.path.abspath(__file__)

Owner = tuple[int, int] | None
"""(uid, gid) to act as, or ``None``: the agent itself, in its own process."""


def write_file(owner: Owner, target: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``target`` (parents made) as ``owner``."""
    if owner is None:
        _write(os.fspath(target), mode, data)
    else:
        _as_user(owner, ["write", str(target), f"{mode & 0o777:o}"], data)


def read_file(owner: Owner, target: Path, limit: int) -> bytes:
    """At most ``limit`` + 1 bytes of the regular file ``target``, read as ``owner`` (so a
    caller can tell a file over ``limit``)."""
    if owner is None:
        return _read(os.fspath(target), limit)
    return _as_user(owner, ["read", str(target), str(limit)])


def unpack(owner: Owner, dest: Path, archive: bytes) -> None:
    """Unpack the tar ``archive`` into ``dest`` as ``owner`` (``data`` filter)."""
    if owner is None:
        _untar(os.fspath(dest), io.BytesIO(archive))
    else:
        _as_user(owner, ["untar", str(dest)], archive)


def pack(owner: Owner, source: Path, name: str) -> bytes:
    """``source`` as a tar (members under ``name/``), read as ``owner``."""
    if owner is None:
        buf = io.BytesIO()
        _tar(os.fspath(source), name, buf)
        return buf.getvalue()
    return _as_user(owner, ["tar", str(source), name])


def make_dirs(owner: Owner, dest: Path) -> None:
    """``mkdir -p dest`` as ``owner``."""
    if owner is None:
        os.makedirs(dest, exist_ok=True)
    else:
        _as_user(owner, ["mkdir", str(dest)])


def _as_user(owner: tuple[int, int], args: list[str], data: bytes = b"") -> bytes:
    import subprocess  # the agent's: the helper itself never starts one

    uid, gid = owner
    done = subprocess.run(
        [sys.executable, "-I", "-S", _SELF, *args],
        input=data,
        capture_output=True,
        user=uid,
        group=gid,
        extra_groups=[],
        umask=0o077,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines() or ["failed"]
        raise OSError(f"{args[0]} as uid {uid}: {lines[-1][:300]}")
    return done.stdout


def _write(target: str, mode: int, data: bytes) -> None:
    folder, name = os.path.split(target)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{name}.fogmesh-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, mode & 0o777)
    os.replace(tmp, target)


def _read(target: str, limit: int) -> bytes:
    fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise OSError(f"{os.path.basename(target)} is not a regular file")
        return handle.read(limit + 1)


def _untar(dest: str, stream: BinaryIO) -> None:
    import tarfile

    os.makedirs(dest, exist_ok=True)
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:  # Python before 3.11.4: no filters; the workload user's own rights bound it
            tar.extractall(dest)  # noqa: S202


def _tar(source: str, name: str, stream: BinaryIO) -> None:
    import tarfile

    with tarfile.open(fileobj=stream, mode="w|") as tar:
        if os.path.isdir(source):
            tar.add(source, arcname=name, recursive=True)


def main() -> None:
    """``python native_user_io.py OP ARGS...`` (run as the workload's user)."""
    op, *args = sys.argv[1:]
    if op == "write":
        _write(args[0], int(args[1], 8), sys.stdin.buffer.read())
    elif op == "untar":
        _untar(args[0], sys.stdin.buffer)
    elif op == "tar":
        _tar(args[0], args[1], sys.stdout.buffer)
    elif op == "read":
        sys.stdout.buffer.write(_read(args[0], int(args[1])))
    elif op == "mkdir":
        os.makedirs(args[0], exist_ok=True)
    else:
        raise SystemExit(f"unknown step {op!r}")


if __name__ == "__main__":
    main()
