"""A real Node-RED 4.x, headless, with a userDir and flows file of its own.

Node-RED and node-red-contrib-fogmesh's dev dependencies live in
``integrations/node-red/node_modules`` (``.ci/nodered.sh`` installs them there, never globally);
every test uses that one copy. The package is linked into the userDir's ``node_modules`` as a
user's ``npm install <folder>`` would, so Node-RED loads it as an installed package.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.brokers import REPO, free_port, wait_port

__all__ = ["EXAMPLES", "PACKAGE", "NodeRed", "ensure_installed", "load_flows"]

PACKAGE = REPO / "integrations" / "node-red"
EXAMPLES = REPO / "examples" / "node-red"
RED_JS = PACKAGE / "node_modules" / "node-red" / "red.js"
SETTINGS = """\
module.exports = {{
    uiHost: "127.0.0.1",
    uiPort: {port},
    flowFile: "flows.json",
    credentialSecret: false, // the test writes flows_cred.json in clear; users' are encrypted
    diagnostics: {{ enabled: false }},
    telemetry: {{ enabled: false }},
    logging: {{ console: {{ level: "info", metrics: false, audit: false }} }},
}};
"""


def ensure_installed() -> None:
    """Run ``.ci/nodered.sh`` (a no-op when the pinned install is there already)."""
    subprocess.run(
        ["sh", str(REPO / ".ci" / "nodered.sh")], check=True, timeout=600, capture_output=True
    )


def load_flows(*names: str) -> list[dict[str, Any]]:
    """The example flows ``examples/node-red/{name}.json``, as one flows file."""
    flows: list[dict[str, Any]] = []
    for name in names:
        flows += json.loads((EXAMPLES / f"{name}.json").read_text())
    return flows


@dataclass
class NodeRed:
    """One Node-RED process on a free port of 127.0.0.1."""

    user_dir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.user_dir / "node-red.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(
        self,
        flows: list[dict[str, Any]],
        credentials: dict[str, dict[str, str]],
        env: dict[str, str],
    ) -> NodeRed:
        """Write the userDir (settings, flows, credentials, the package) and start Node-RED
        (:meth:`wait_started` waits for its flows)."""
        self.user_dir.mkdir(parents=True, exist_ok=True)
        (self.user_dir / "settings.js").write_text(SETTINGS.format(port=self.port))
        (self.user_dir / "flows.json").write_text(json.dumps(flows, indent=2))
        cred = self.user_dir / "flows_cred.json"
        cred.write_text(json.dumps(credentials))
        cred.chmod(0o600)
        modules = self.user_dir / "node_modules"
        modules.mkdir(exist_ok=True)
        link = modules / "node-red-contrib-fogmesh"
        if not link.exists():
            link.symlink_to(PACKAGE, target_is_directory=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    "node",
                    str(RED_JS),
                    *("--userDir", str(self.user_dir)),
                    *("--settings", str(self.user_dir / "settings.js")),
                ],
                cwd=self.user_dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **env},
            )
        return self

    def wait_started(self, timeout: float = 120.0) -> NodeRed:
        """Block until Node-RED serves http and has started its flows."""
        assert self.proc is not None
        wait_port(self.port, timeout)
        deadline = time.monotonic() + timeout
        while "Started flows" not in self.log():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"Node-RED did not start its flows:\n{self.log()[-4000:]}")
            time.sleep(0.2)
        return self

    def inject(self, node_id: str) -> None:
        """Press an inject node's button (the editor's ``POST /inject/{id}``)."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/inject/{node_id}", method="POST", data=b""
        )
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 (http://127.0.0.1)
            assert answer.status == 200, answer.status

    def get(self, path: str) -> Any:
        """GET an http-in endpoint of the flows; its JSON body."""
        url = f"http://127.0.0.1:{self.port}{path}"
        with urllib.request.urlopen(url, timeout=30) as answer:
            return json.loads(answer.read())

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
