"""The archive a native instance's work/ is unpacked from: the artefact's files and only the
snapshot's state/ (pure: no processes)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from fogmesh.agent.runtime.native_work import work_archive


def _snapshot(files: dict[str, bytes]) -> tarfile.TarFile:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as out:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
    return tarfile.open(fileobj=io.BytesIO(buf.getvalue()), mode="r")


def _contents(archive: bytes) -> dict[str, bytes | None]:
    """Each member's normalised name and its bytes (``None`` for a directory), last wins."""
    found: dict[str, bytes | None] = {}
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r") as tar:
        for member in tar.getmembers():
            name = member.name.removeprefix("./") or "."
            handle = tar.extractfile(member) if member.isfile() else None
            found[name] = handle.read() if handle is not None else None
    return found


def _artefact(tmp_path: Path) -> Path:
    root = tmp_path / "app"
    (root / "state").mkdir(parents=True)
    (root / "run.sh").write_bytes(b"app's script")
    (root / "state" / "seed").write_bytes(b"artefact's seed")
    return root


def test_restore_takes_only_the_snapshots_state(tmp_path: Path) -> None:
    """A snapshot's members outside state/ (or climbing out of it) are left out, and its state/
    replaces the artefact's own."""
    snapshot = _snapshot(
        {"state/kept": b"moved", "run.sh": b"planted", "state/../escape": b"no", "x": b"no"}
    )
    found = _contents(work_archive(_artefact(tmp_path), snapshot))
    assert found["run.sh"] == b"app's script"
    assert found["state"] is None
    assert found["state/kept"] == b"moved"
    assert "state/seed" not in found
    assert not any("escape" in name for name in found)
    assert "x" not in found


def test_create_keeps_the_artefacts_state_and_always_has_the_directory(tmp_path: Path) -> None:
    """Without a snapshot the artefact's state/ stays; with neither, state/ is still made."""
    found = _contents(work_archive(_artefact(tmp_path), None))
    assert found["state/seed"] == b"artefact's seed"
    assert found["run.sh"] == b"app's script"
    assert _contents(work_archive(None, _snapshot({}))) == {"state": None}
