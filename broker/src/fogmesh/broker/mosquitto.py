"""Render an equivalent Mosquitto configuration for one broker of the mesh.

Output files (in ``--out``): ``mosquitto.conf``, ``passwd`` (the mesh's ``$7$`` hashes, which
is mosquitto_passwd's own format, so no plain password is written), ``acl`` (the roles as
Mosquitto ``user``/``topic`` blocks and ``pattern`` lines: ``%u`` is the username).

Mosquitto started as root reads its configuration, then drops to ``user`` and only then reads
``passwd`` and ``acl`` and writes its persistence directory. So the rendered configuration names
that user, and, when the files are rendered in place by root, they are handed to it.
"""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

from fogmesh.broker.acl import DEFAULT_ROLES, EVERYONE
from fogmesh.broker.config import LinkSpec, MeshConfigError, MeshSpec, RoleSpec
from fogmesh.broker.runner import data_dir_of

__all__ = ["DEFAULT_USER", "persistence_dir", "render_mosquitto"]

DEFAULT_USER = "mosquitto"  # Debian's package runs as this user
_DIRECTION = {"out": "out", "in": "in", "both": "both"}


def persistence_dir(mesh: MeshSpec, name: str) -> Path:
    """Where the rendered Mosquitto keeps its database: the broker's ``data_dir``, made absolute
    (relative to where ``render-mosquitto`` runs, like ``fogmesh-broker run``)."""
    if mesh.brokers[name].data_dir is None:
        return Path("/var/lib/mosquitto")  # Debian's own, owned by user mosquitto
    return data_dir_of(mesh, name).absolute()


def _fill(pattern: str, *, username: str, node: str, tenant: str) -> str:
    return (
        pattern.replace("{username}", username).replace("{node}", node).replace("{tenant}", tenant)
    )


def _acl(mesh: MeshSpec, name: str) -> str:
    spec = mesh.brokers[name]
    roles: dict[str, RoleSpec] = {**DEFAULT_ROLES, **spec.roles}
    lines = ["# rendered by fogmesh-broker render-mosquitto; do not edit", ""]
    lines.append("# every account reads the replies sent to its own account (%u is the username)")
    # never %c: Mosquitto lets a client id hold "/", so a %c grant could reach other accounts
    lines += ["pattern read " + pat.replace("{username}", "%u") for pat in EVERYONE.subscribe]
    for user in spec.users:
        role_name = user.role
        role = roles.get(role_name)
        if role is None:
            raise MeshConfigError(f"user {user.username}: unknown role {role_name!r}")
        if role.deny_publish:
            # Mosquitto's "topic deny" also stops reading: it cannot refuse publishing alone
            raise MeshConfigError(
                f"role {role_name}: Mosquitto cannot deny publishing only (deny_publish);"
                " list the topics the role may publish instead"
            )
        node, tenant = user.node or user.username, user.tenant or user.username
        lines += ["", f"user {user.username}"]
        for access, patterns in (("write", role.publish), ("read", role.subscribe)):
            for pat in patterns:
                if "{client}" in pat:
                    # a topic line cannot name the client id, and a pattern line binds everyone
                    raise MeshConfigError(
                        f"role {role_name}: Mosquitto cannot tie {{client}} in {pat!r} to one"
                        " account; use {username}, {node} or {tenant}"
                    )
                filled = _fill(pat, username=user.username, node=node, tenant=tenant)
                lines.append(f"topic {access} {filled}")
    return "\n".join(lines) + "\n"


def _conf(mesh: MeshSpec, name: str, install_dir: Path, user: str) -> str:
    """mosquitto.conf; ``install_dir`` is where passwd and acl live on the target machine."""
    spec = mesh.brokers[name]
    lines = [
        "# rendered by fogmesh-broker render-mosquitto; do not edit",
        "# started as root, Mosquitto drops to this user before it reads passwd and acl",
        f"user {user}",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "per_listener_settings false",
        f"allow_anonymous {'true' if spec.allow_anonymous else 'false'}",
        "persistence true",
        f"persistence_location {persistence_dir(mesh, name)}/",
        f"persistent_client_expiration {max(1, spec.session_expiry // 3600)}h",
        "max_queued_messages 1000000",
        "max_inflight_messages 200",
        f"password_file {install_dir / 'passwd'}",
        f"acl_file {install_dir / 'acl'}",
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
    paths = mesh.resolve_paths(link)
    if any(r.paths is not None for r in link.rules) or any(
        p.rate is not None or p.budget_bytes is not None for p, _ in paths
    ):
        raise MeshConfigError(
            f"link {link.name}: a Mosquitto bridge cannot keep rules off a path, nor limit a"
            " path's rate or monthly bytes (paths: and rules' paths:)"
        )
    # several addresses: Mosquitto dials the first, falls back in turn and returns to the first
    address = " ".join(f"{end.host}:{end.port}" for _, end in paths)
    lines: list[str] = []
    lines += [
        f"connection fmb-{name}-{link.name}",
        f"address {address}",
        *(["round_robin false"] if len(paths) > 1 else []),
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


def _write(path: Path, text: str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    path.chmod(mode)  # an existing file keeps its old mode otherwise


def _reachable(path: Path, account: pwd.struct_passwd) -> bool:
    """True if ``account`` may traverse every directory above ``path``."""
    for parent in path.parents:
        try:
            st = parent.stat()
        except OSError:
            return False
        if st.st_uid == account.pw_uid:
            bit = stat.S_IXUSR
        elif st.st_gid == account.pw_gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def _hand_over(files: list[Path], data: Path, user: str) -> list[str]:
    """Give ``user`` the files Mosquitto reads after dropping to it, and its persistence dir.

    Only root can, and only on the machine Mosquitto runs on; otherwise the notes say what to do.
    """
    if os.geteuid() != 0:
        return []  # Mosquitto started by this user keeps running as it: nothing to hand over
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        return [f"user {user} does not exist here: create it, or pass --user"]
    notes: list[str] = []
    data.mkdir(parents=True, exist_ok=True)
    for path in [*files, data]:
        os.chown(path, account.pw_uid, account.pw_gid)
    data.chmod(0o700)
    for path in [*files, data]:
        if not _reachable(path, account):
            notes.append(f"user {user} cannot reach {path}: a directory above it is closed to it")
    return notes


def render_mosquitto(
    mesh: MeshSpec,
    name: str,
    out: Path,
    *,
    install_dir: Path | None = None,
    user: str = DEFAULT_USER,
) -> tuple[list[Path], list[str]]:
    """Write ``mosquitto.conf``, ``passwd`` and ``acl`` for broker ``name`` into ``out``.

    ``install_dir`` is where the files will be on the broker's machine (default: ``out``);
    ``user`` the account Mosquitto drops to when started as root. Rendered in place by root,
    ``passwd`` and ``acl`` are handed to ``user`` (mode 0600) and the persistence directory is
    made for it. Returns the files written and notes on what is left to do by hand.
    """
    out.mkdir(parents=True, exist_ok=True)
    out = out.resolve()
    spec = mesh.brokers[name]
    conf = _conf(mesh, name, install_dir or out, user)
    texts = {
        # the bridge password may be in the configuration: only its owner reads it then
        "mosquitto.conf": (conf, 0o600 if "remote_password" in conf else 0o644),
        "passwd": ("".join(f"{u.username}:{u.password_hash}\n" for u in spec.users), 0o600),
        "acl": (_acl(mesh, name), 0o600),
    }
    written = []
    for fname, (text, mode) in texts.items():
        _write(out / fname, text, mode)
        written.append(out / fname)
    data = persistence_dir(mesh, name)
    if install_dir is None or install_dir.resolve() == out:
        notes = _hand_over(written[1:], data, user)
    else:
        notes = [
            f"on the broker's machine: copy passwd and acl to {install_dir},"
            f" chown {user} {install_dir}/passwd {install_dir}/acl,"
            f" install -d -o {user} -m 700 {data}"
        ]
    return written, notes
