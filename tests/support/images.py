"""Tiny Docker test images built on this machine, and a local image registry to pull them from.

No registry outside the machine is needed: :func:`build_busybox_image` imports a rootfs tarball
holding Debian's static ``/bin/busybox`` (package ``busybox-static``) plus one symlink per applet;
:class:`LocalRegistry` runs Debian's ``docker-registry`` on ``127.0.0.1`` (Docker trusts
``127.0.0.0/8`` as an insecure registry by default) so a test can push there and pull back.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import socket
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.brokers import free_port
from tests.support.processes import terminate

__all__ = ["BUSYBOX_TAG", "LocalRegistry", "build_busybox_image", "free_port", "image_exists"]

BUSYBOX_TAG = "fogmesh/busybox:test"
"""The tag of the test image made by :func:`build_busybox_image`."""

_BUSYBOX = Path("/bin/busybox")
_DIRS = ("bin", "data", "dev", "etc", "proc", "root", "sys", "tmp", "var")


def image_exists(tag: str) -> bool:
    """Whether the local Docker engine has an image called ``tag``."""
    done = subprocess.run(
        ["docker", "image", "inspect", tag], capture_output=True, check=False, timeout=60
    )
    return done.returncode == 0


def _applets() -> list[str]:
    out = subprocess.run(
        [str(_BUSYBOX), "--list"], capture_output=True, text=True, check=True, timeout=30
    )
    return sorted({name for name in out.stdout.split() if name and "/" not in name})


def _rootfs_tar() -> bytes:
    """A rootfs tarball: /bin/busybox, a symlink per applet, a few empty directories."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in _DIRS:
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if name == "tmp" else 0o755
            tar.addfile(info)
        tar.add(str(_BUSYBOX), arcname="bin/busybox")
        for applet in _applets():
            if applet == "busybox":
                continue
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            link.mode = 0o777
            tar.addfile(link)
        passwd = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size = len(passwd)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(passwd))
    return buf.getvalue()


def build_busybox_image(tag: str = BUSYBOX_TAG, *, rebuild: bool = False) -> str:
    """Make (once) a busybox image tagged ``tag`` with ``docker import``; return the tag.

    Needs ``/bin/busybox`` from Debian's ``busybox-static`` (a static binary, so the image
    needs no libc). ``PATH=/bin`` and ``CMD ["sh"]`` are set on the image.
    """
    if not rebuild and image_exists(tag):
        return tag
    if not _BUSYBOX.exists():
        raise RuntimeError("/bin/busybox is missing: apt-get install busybox-static")
    subprocess.run(
        ["docker", "import", "-c", "ENV PATH=/bin", "-c", 'CMD ["sh"]', "-", tag],
        input=_rootfs_tar(),
        capture_output=True,
        check=True,
        timeout=120,
    )
    return tag


@dataclass
class LocalRegistry:
    """A ``docker-registry`` process serving on ``127.0.0.1:{port}``, storing under ``workdir``."""

    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """``127.0.0.1:{port}``: the registry part of an image reference."""
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> LocalRegistry:
        """Write a config (no auth, filesystem storage), start the registry, wait for it."""
        binary = shutil.which("docker-registry")
        if binary is None:
            raise RuntimeError("docker-registry is missing: apt-get install docker-registry")
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n"
            "storage:\n"
            f"  filesystem:\n    rootdirectory: {self.workdir / 'data'}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n"
        )
        log = (self.workdir / "registry.log").open("wb")
        self.proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited; see {self.workdir / 'registry.log'}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return self
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"docker-registry did not listen on {self.address} in {timeout}s")

    def push(self, local_tag: str, repo: str = "fogmesh/busybox", tag: str = "test") -> str:
        """Push ``local_tag`` to this registry as ``{address}/{repo}:{tag}``.

        The registry-qualified tag is removed from the local engine afterwards, so a later
        pull of the returned reference really asks the registry.
        """
        ref = f"{self.address}/{repo}:{tag}"
        subprocess.run(["docker", "tag", local_tag, ref], capture_output=True, check=True)
        subprocess.run(["docker", "push", ref], capture_output=True, check=True, timeout=120)
        subprocess.run(["docker", "rmi", ref], capture_output=True, check=True, timeout=60)
        return ref

    def stop(self) -> None:
        """Stop the registry process."""
        terminate(self.proc, 10)
        self.proc = None
