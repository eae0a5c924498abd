"""``fogmesh up --tls``: the same fleet with TLS on its WAN, from a CA the fleet makes itself.

Every broker gets a second listener, ``wan``, with a certificate the fleet's CA signed for
127.0.0.1 and localhost (``{state_dir}/pki``: ``ca.pem``, ``ca.key``, one certificate per
broker). The sites' links reach the cloud's ``wan`` listener and verify it against the CA; the
node agents reach their site's ``wan`` listener the same way. The services stay on the cloud's
plain listener (they run beside it); ``fleet.env`` points the CLI at the cloud's ``wan``
listener with the CA (``FOGMESH_BROKER_TLS``, ``FOGMESH_BROKER_CA_FILE``).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fogmesh.broker.certs import issue_cert, load_or_make_ca
from fogmesh.cli.fleet.plan import SITES, FleetPlan, NodePlan, free_port

__all__ = ["TlsFleetPlan"]

_HOSTS = ["127.0.0.1", "localhost"]


@dataclass
class TlsFleetPlan(FleetPlan):
    """A :class:`FleetPlan` whose links and agents speak TLS to a ``wan`` listener."""

    tls_ports: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Pick the ``wan`` listeners' ports."""
        self.tls_ports = {name: free_port() for name in ("cloud", *SITES)}

    @property
    def pki(self) -> Path:
        """Where the CA and the brokers' certificates live."""
        return self.state_dir / "pki"

    def mesh(self) -> dict[str, Any]:
        """The plain fleet's mesh, plus ``wan`` TLS listeners that the links use."""
        mesh = super().mesh()
        for name, broker in mesh["brokers"].items():
            tls = {
                "certfile": str(self.pki / f"{name}.pem"),
                "keyfile": str(self.pki / f"{name}.key"),
            }
            broker["listeners"].append(
                {"name": "wan", "host": "127.0.0.1", "port": self.tls_ports[name], "tls": tls}
            )
        for link in mesh["links"]:
            link["remote"].update(listener="wan", tls={"cafile": str(self.pki / "ca.pem")})
        return mesh

    def agent_config(self, node: NodePlan) -> dict[str, Any]:
        """The plain agent's configuration, connecting to its site's TLS listener."""
        config = super().agent_config(node)
        config["broker"].update(
            port=self.tls_ports[node.site], tls=True, ca_file=str(self.pki / "ca.pem")
        )
        return config

    def env_file(self) -> str:
        """The plain fleet's lines, with the CLI on the cloud's TLS listener.

        ``FOGMESH_BROKER`` names the ``wan`` listener with ``FOGMESH_BROKER_TLS`` and the CA
        (the CA alone, without ``FOGMESH_BROKER_TLS``, failed every CLI command's settings);
        ``FOGMESH_TLS_PORT`` is that port for mosquitto_sub's ``--cafile``. ``FOGMESH_PORT``
        stays the plain listener for the tutorial's commands.
        """
        plain = super().env_file().splitlines(keepends=True)
        lines = [line for line in plain if not line.startswith("export FOGMESH_BROKER=")]
        port = self.tls_ports["cloud"]
        tls = {
            "FOGMESH_BROKER": f"127.0.0.1:{port}",
            "FOGMESH_BROKER_TLS": "1",
            "FOGMESH_BROKER_CA_FILE": str(self.pki / "ca.pem"),
            "FOGMESH_TLS_PORT": str(port),
        }
        return "".join(lines) + "".join(f"export {k}={shlex.quote(v)}\n" for k, v in tls.items())

    def write_files(self) -> dict[str, Path]:
        """Make the CA and the brokers' certificates, then the plain fleet's files."""
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.pki.mkdir(mode=0o700, exist_ok=True)
        ca = load_or_make_ca(self.pki)
        for name in self.tls_ports:
            issue_cert(ca, self.pki, name, _HOSTS)
        paths = super().write_files()
        paths["ca"] = ca.cert
        return paths
