"""The agent's Docker Engine client against the real dockerd: containers, logs, archives,
images loaded from a file, volumes, networks and the engine's refusals."""

from __future__ import annotations

import io
import subprocess
import tarfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from fogmesh.agent.runtime.engine import Engine, EngineError, EngineUnreachable, is_regular_file
from tests.support.images import build_busybox_image

pytestmark = pytest.mark.docker

LABEL = "fogmesh.test-engine"


@pytest.fixture
def run_id() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
async def engine(run_id: str) -> AsyncIterator[Engine]:
    """The local engine; everything labelled with this run is removed afterwards."""
    client = Engine(timeout=30)
    try:
        yield client
    finally:
        for container in await client.containers({"label": [f"{LABEL}={run_id}"]}):
            await client.remove_container(container["Id"], force=True)
        for volume in await client.volumes({"label": [f"{LABEL}={run_id}"]}):
            await client.remove_volume(volume["Name"])
        for network in await client.networks({"label": [f"{LABEL}={run_id}"]}):
            await client.remove_network(network["Id"])
        await client.close()


async def _container(engine: Engine, run_id: str, script: str) -> str:
    config: dict[str, Any] = {
        "Image": build_busybox_image(),
        "Cmd": ["sh", "-c", script],
        "Labels": {LABEL: run_id},
    }
    return await engine.create_container(config, f"fm-engine-{run_id}")


def _tar(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as out:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        out.addfile(info, io.BytesIO(data))
    return buf.getvalue()


async def test_container_lifecycle_logs_and_stats(engine: Engine, run_id: str) -> None:
    """create, start, the demultiplexed log stream (stdout and stderr), stats, stop, remove;
    a missing container is an EngineError 404 with the engine's message."""
    cid = await _container(engine, run_id, "echo out; echo err >&2; exec sleep 60")
    assert (await engine.inspect_container(cid))["State"]["Status"] == "created"
    await engine.start_container(cid)
    await engine.start_container(cid)  # 304: already running, not an error
    for _ in range(50):
        text = await engine.logs(cid, tail=10)
        if "err" in text:
            break
    assert sorted(text.splitlines()) == ["err", "out"]
    assert await engine.logs(cid, tail=1) in ("out\n", "err\n")
    stats = await engine.stats(cid)
    assert stats["memory_stats"]["usage"] > 0
    listed = await engine.containers({"label": [f"{LABEL}={run_id}"]})
    assert [c["Id"] for c in listed] == [cid]
    await engine.stop_container(cid, 0)
    assert (await engine.inspect_container(cid))["State"]["Status"] == "exited"
    await engine.remove_container(cid)
    with pytest.raises(EngineError) as missing:
        await engine.inspect_container(cid)
    assert missing.value.status == 404
    assert "No such container" in missing.value.message


async def test_archives_both_ways(engine: Engine, run_id: str, tmp_path: Path) -> None:
    """A tar put from bytes and from a file lands in the container; the archive read back
    carries the path's stat before its body; changes lists what was added."""
    cid = await _container(engine, run_id, "exec sleep 60")
    await engine.put_archive(cid, "/tmp", _tar("a.txt", b"from bytes"))
    big = tmp_path / "big.tar"
    payload = bytes(range(256)) * 8192  # 2 MiB: sent in pieces
    big.write_bytes(_tar("b.bin", payload))
    await engine.put_archive(cid, "/tmp", big)
    seen: list[dict[str, Any]] = []
    async with engine.get_archive(cid, "/tmp/b.bin", check=seen.append) as archive:
        member = archive.next()
        assert member is not None
        handle = archive.extractfile(member)
        assert handle is not None
        assert handle.read() == payload
    assert seen[0]["size"] == len(payload)
    assert is_regular_file(seen[0])
    directory: list[dict[str, Any]] = []
    async with engine.get_archive(cid, "/tmp", check=directory.append):
        pass
    assert not is_regular_file(directory[0])

    def refuse(_stat: dict[str, Any]) -> None:
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        async with engine.get_archive(cid, "/tmp/b.bin", check=refuse):
            pass
    with pytest.raises(EngineError, match="over 1000 bytes"):
        async with engine.get_archive(cid, "/tmp/b.bin", max_bytes=1000):
            pass
    with pytest.raises(EngineError) as absent:
        async with engine.get_archive(cid, "/tmp/nope"):
            pass
    assert absent.value.status == 404
    with pytest.raises(EngineError) as gone:  # the engine answers before it reads the body
        await engine.put_archive("no-such-container", "/tmp", big)
    assert gone.value.status == 404
    paths = {c["Path"] for c in await engine.changes(cid)}
    assert {"/tmp/a.txt", "/tmp/b.bin"} <= paths


async def test_load_tag_list_and_remove_an_image(
    engine: Engine, run_id: str, tmp_path: Path
) -> None:
    """An image tar is loaded from its file, tagged, listed by reference and untagged."""
    saved = tmp_path / "image.tar"
    subprocess.run(
        ["docker", "save", "-o", str(saved), build_busybox_image()], check=True, timeout=120
    )
    messages = await engine.load(saved, timeout=120)
    assert any("Loaded image" in str(m.get("stream", "")) for m in messages)
    repo = f"fogmesh/engine-test-{run_id}"
    await engine.tag(build_busybox_image(), repo, "one")
    try:
        images = await engine.images({"reference": [repo]})
        assert [t for i in images for t in i["RepoTags"]] == [f"{repo}:one"]
        assert (await engine.inspect_image(f"{repo}:one"))["Id"].startswith("sha256:")
    finally:
        await engine.remove_image(f"{repo}:one")
    assert await engine.images({"reference": [repo]}) == []
    with pytest.raises(EngineError) as unknown:
        await engine.inspect_image(f"{repo}:one")
    assert unknown.value.status == 404


async def test_volumes_networks_and_conflicts(engine: Engine, run_id: str) -> None:
    """Volumes and networks by label; creating a taken container name is a 409."""
    labels = {LABEL: run_id}
    await engine.create_volume({"Name": f"fm-engine-{run_id}", "Labels": labels})
    assert [v["Name"] for v in await engine.volumes({"label": [f"{LABEL}={run_id}"]})] == [
        f"fm-engine-{run_id}"
    ]
    net = await engine.create_network({"Name": f"fm-engine-{run_id}", "Labels": labels})
    assert (await engine.inspect_network(f"fm-engine-{run_id}"))["Id"] == net
    await _container(engine, run_id, "true")
    with pytest.raises(EngineError) as taken:
        await _container(engine, run_id, "true")
    assert taken.value.status == 409


async def test_unreachable_engine(tmp_path: Path) -> None:
    """A socket nobody serves: EngineUnreachable, at once."""
    with pytest.raises(EngineUnreachable):
        await Engine(f"unix://{tmp_path}/none.sock", timeout=5).version()
