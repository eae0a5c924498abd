"""Render an equivalent Mosquitto configuration for one broker of the mesh.

Output files (in ``--out``): ``mosquitto.conf``, ``passwd`` (the mesh's ``$7$`` hashes, which
is mosquitto_passwd's own format, so no plain password is written), ``acl`` (Mosquitto's
``pattern`` lines from the roles: ``%u`` is the username, ``%c`` the client id).
"""

from __future__ import annotations

from pathlib import Path

from fogmesh.broker.acl import _COMMON, DEFAULT_ROLES
from fogmesh.broker.config import LinkSpec, MeshSpec, RoleSpec
from fogmesh.broker.runner import data_dir_of

__all__ = ["render_mosquitto"]

_DIRECTION = {"out": "out", "in": "in", "both": "both"}


def _acl_pattern(pattern: str, *, username: str, node: str, tenant: str) -> str:
    return (
        pattern.replace("{username}", username)
        .replace("{client}", "%c")
        .replace("{node}", node)
        .replace("{tenant}", tenant)
    )


def _acl(mesh: MeshSpec, name: str) -> str:
    spec = mesh.brokers[name]
    roles: dict[str, RoleSpec] = {**DEFAULT_ROLES, **spec.roles}
    lines = ["# rendered by fogmesh-broker render-mosquitto; do not edit", ""]
    lines += ["# every authenticated client: answer anyone, read its own replies"]
    lines += [f"pattern write {p.replace('{client}', '%c')}" for p in _COMMON.publish]
    lines += [f"pattern read {p.replace('{client}', '%c')}" for p in _COMMON.subscribe]
    for user in spec.users:
        role = roles[user.role]
        node, tenant = user.node or user.username, user.tenant or user.username
        lines += ["", f"user {user.username}"]
        # Mosquitto has no deny rule: "deny" patterns become a topic line with access "deny"
        for pat in role.deny_publish:
            expanded = _acl_pattern(pat, username=user.username, node=node, tenant=tenant)
            lines.append(f"topic deny {expanded}")
        for pat in role.publish:
            lines.append(
                "topic write "
                + _acl_pattern(pat, username=user.username, node=node, tenant=tenant).replace(
                    "%c", "+"
                )
            )
        for pat in role.subscribe:
            lines.append(
                "topic read "
                + _acl_pattern(pat, username=user.username, node=node, tenant=tenant).replace(
                    "%c", "+"
                )
            )
    return "\n".join(lines) + "\n"


def _conf(mesh: MeshSpec, name: str, out: Path) -> str:
    """mosquitto.conf; ``out`` is where passwd and acl will live on the target machine."""
    spec = mesh.brokers[name]
    data = data_dir_of(mesh, name)
    lines = [
        "# rendered by fogmesh-broker render-mosquitto; do not edit",
        "per_listener_settings false",
        f"allow_anonymous {'true' if spec.allow_anonymous else 'false'}",
        "persistence true",
        f"persistence_location {data}/",
        f"persistent_client_expiration {max(1, spec.session_expiry // 3600)}h",
        "max_queued_messages 1000000",
        "max_inflight_messages 200",
        f"password_file {out / 'passwd'}",
        f"acl_file {out / 'acl'}",
        "",
    ]
    for lst in spec.listeners:
        lines.append(f"listener {lst.port} {lst.host}")
        if lst.type == "ws":
            lines.append("protocol websockets")
        if lst.tls is not None:
            lines += [f"certfile {lst.tls.certfile}", f"keyfile {lst.tls.keyfile}"]
            if lst.tls.cafile:
                lines += [f"cafile {lst.tls.cafile}", "require_certificate true"]
        lines.append("")
    for link in mesh.links_of(name):
        lines += _bridge(mesh, name, link)
    return "\n".join(lines)


def _bridge(mesh: MeshSpec, name: str, link: LinkSpec) -> list[str]:
    """The bridge block of one link."""
    remote = mesh.resolve(link.remote)
    lines: list[str] = []
    lines += [
        f"connection fmb-{name}-{link.name}",
        f"address {remote.host}:{remote.port}",
        f"remote_clientid fmb-{name}-{link.name}-r",
        "cleansession false",
        "bridge_protocol_version mqttv311",
        # amqtt refuses the private bridge protocol byte; Mosquitto peers use it
        f"try_private {'false' if remote.kind != 'mosquitto' else 'true'}",
        f"keepalive_interval {link.keepalive}",
        f"restart_timeout {max(1, round(link.backoff_base))} {max(1, round(link.backoff_cap))}",
        f"notification_topic fm/v1/mesh/{name}/links/{link.name}/mosquitto",
        f"max_queued_messages {link.queue.max_messages}",
    ]
    if remote.username:
        lines.append(f"remote_username {remote.username}")
    if remote.password:
        lines.append(f"remote_password {remote.password}")
    if remote.tls is not None:
        if remote.tls.cafile:
            lines.append(f"bridge_cafile {remote.tls.cafile}")
        if remote.tls.insecure:
            lines.append("bridge_insecure true")
    for rule in link.rules:
        lp = rule.local_prefix or '""'
        rp = rule.remote_prefix or '""'
        if lp == '""' and rp == '""':
            lines.append(f"topic {rule.pattern} {_DIRECTION[rule.direction]} {rule.qos}")
        else:
            lines.append(f"topic {rule.pattern} {_DIRECTION[rule.direction]} {rule.qos} {lp} {rp}")
    lines.append("")
    return lines


def render_mosquitto(
    mesh: MeshSpec, name: str, out: Path, *, install_dir: Path | None = None
) -> list[Path]:
    """Write ``mosquitto.conf``, ``passwd`` and ``acl`` for broker ``name`` into ``out``.

    ``install_dir`` is where the files will be on the broker's machine (default: ``out``).
    """
    out.mkdir(parents=True, exist_ok=True)
    out = out.resolve()
    spec = mesh.brokers[name]
    files = {
        "mosquitto.conf": _conf(mesh, name, install_dir or out),
        "passwd": "".join(f"{u.username}:{u.password_hash}\n" for u in spec.users),
        "acl": _acl(mesh, name),
    }
    written = []
    for fname, text in files.items():
        path = out / fname
        path.write_text(text, encoding="utf-8")
        if fname == "passwd":
            path.chmod(0o600)
        written.append(path)
    return written
