"""Render a NATS cluster (its MQTT gateway) for one broker of the mesh: the clustered cloud tier.

Output files (in ``--out``): ``member-N.conf`` per member (server name, client, route and MQTT
listeners, JetStream with a store directory of its own, the routes to every other member) and
``accounts.conf``, which every member includes: one account holding every mesh user, with the
fogmesh roles turned into NATS subject permissions.

Why these choices (see ``docs/cluster.md``):

- MQTT topics are NATS subjects: ``/`` becomes ``.``, ``+`` becomes ``*`` and ``#`` becomes
  ``>``. A filter ``a/#`` also matches ``a`` itself in MQTT, so it grants ``a`` and ``a.>``.
- One account for the whole mesh, as on Mosquitto: the topic tree is one namespace and tenants
  are kept apart by their grants. Replies stay bound per account because every user reads only
  ``fm.v1.reply.<username>.>`` (the same :data:`~fogmesh.broker.acl.EVERYONE` grant), and only
  services and nodes may publish under ``fm.v1.reply``.
- NATS checks only plain or bcrypt passwords, never the mesh's ``$7$`` hashes: each user's
  entry reads the variable ``$FOGMESH_NATS_PASSWORD_<USER>``. NATS takes a variable from the
  config first, then from the member's environment, and parses an environment value as a config
  token (a password starting with a digit is a number, one with a space two tokens: the member
  refuses to start), and a variable defined in a member's file is not seen inside the files it
  includes. So a password set where ``render-nats`` runs is written into ``accounts.conf`` as a
  quoted string (the file is then mode 0600); one left unset there is read from the member's
  environment at start, as a token.
- ``{client}`` in a grant cannot be expressed (NATS permissions know users, not client ids) and
  is refused, as render-mosquitto refuses it. ``deny_publish`` can be (NATS ``deny`` applies to
  the one direction it is written for).
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path

from fogmesh.broker.acl import DEFAULT_ROLES, EVERYONE
from fogmesh.broker.config import ClusterMember, MeshConfigError, MeshSpec, RoleSpec, UserSpec
from fogmesh.broker.runner import data_dir_of

__all__ = ["ACCOUNT", "cluster_members", "password_env", "render_nats", "subjects_of"]

ACCOUNT = "FOGMESH"
"""The NATS account every mesh user belongs to."""


def password_env(username: str) -> str:
    """The environment variable a member reads ``username``'s plain password from."""
    return "FOGMESH_NATS_PASSWORD_" + re.sub(r"[^A-Za-z0-9]", "_", username).upper()


def subjects_of(pattern: str) -> list[str]:
    """The NATS subjects an MQTT topic filter grants (``a/#`` grants ``a`` and ``a.>``)."""
    if "." in pattern or " " in pattern:
        # NATS 2.9's MQTT gateway refuses topics holding "." (a subject separator) or spaces
        raise MeshConfigError(f"NATS cannot express the topic filter {pattern!r}")
    levels = ["*" if lvl == "+" else ">" if lvl == "#" else lvl for lvl in pattern.split("/")]
    if any(lvl == "" for lvl in levels):
        raise MeshConfigError(f"NATS cannot express the empty topic level in {pattern!r}")
    subject = ".".join(levels)
    if len(levels) > 1 and levels[-1] == ">":
        return [".".join(levels[:-1]), subject]
    return [subject]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cluster_members(mesh: MeshSpec, name: str, count: int | None = None) -> list[ClusterMember]:
    """The members of broker ``name``: those its ``cluster`` lists, else ``count`` (default 3)
    on free loopback ports (a cluster for one machine: development and tests)."""
    cluster = mesh.brokers[name].cluster
    if cluster is not None and cluster.members:
        if count is not None and count != len(cluster.members):
            raise MeshConfigError(
                f"broker {name} lists {len(cluster.members)} members, not {count}"
            )
        return list(cluster.members)
    return [
        ClusterMember(
            name=f"{name}-{i}",
            mqtt_port=_free_port(),
            client_port=_free_port(),
            route_port=_free_port(),
            monitor_port=_free_port(),
        )
        for i in range(1, (count or 3) + 1)
    ]


def _fill(pattern: str, user: UserSpec) -> str:
    if "{client}" in pattern:
        raise MeshConfigError(
            f"NATS cannot tie {{client}} in {pattern!r} to one account;"
            " use {username}, {node} or {tenant}"
        )
    return (
        pattern.replace("{username}", user.username)
        .replace("{node}", user.node or user.username)
        .replace("{tenant}", user.tenant or user.username)
    )


def _grant(patterns: list[str], user: UserSpec) -> list[str]:
    out: list[str] = []
    for pat in patterns:
        for subject in subjects_of(_fill(pat, user)):
            if subject not in out:
                out.append(subject)
    return out


def _user_block(user: UserSpec, roles: dict[str, RoleSpec], password: str | None) -> str:
    role = roles.get(user.role)
    if role is None:
        raise MeshConfigError(f"user {user.username}: unknown role {user.role!r}")
    publish: dict[str, list[str]] = {"allow": _grant(role.publish, user)}
    if role.deny_publish:
        publish["deny"] = _grant(role.deny_publish, user)
    # the gateway delivers QoS 1 through a JetStream consumer on $MQTT.sub.<random>, which
    # the user itself must be allowed to read; MQTT-only users cannot name it (test_nats_cluster)
    subscribe = {"allow": [*_grant([*role.subscribe, *EVERYONE.subscribe], user), "$MQTT.sub.>"]}
    if not publish["allow"]:
        # an empty allow list is "no limit" to NATS: deny everything instead
        publish = {"deny": [">"]}
    lines = [
        "      {",
        f"        user: {json.dumps(user.username)}",
        # JSON's quoting is NATS's: the password is one string, whatever it holds
        f"        password: {json.dumps(password)}"
        if password
        else f"        password: ${password_env(user.username)}",
        # MQTT only: a NATS client could read every $MQTT.sub delivery subject of the account
        '        allowed_connection_types: ["MQTT"]',
        "        permissions: {",
        f"          publish: {json.dumps(publish)}",
        f"          subscribe: {json.dumps(subscribe)}",
        "        }",
        "      }",
    ]
    return "\n".join(lines)


def _accounts(mesh: MeshSpec, name: str, passwords: Mapping[str, str]) -> str:
    spec = mesh.brokers[name]
    if not spec.users:
        raise MeshConfigError(f"broker {name}: a NATS cluster needs users (anonymous is refused)")
    roles: dict[str, RoleSpec] = {**DEFAULT_ROLES, **spec.roles}
    blocks = ",\n".join(
        _user_block(user, roles, passwords.get(password_env(user.username))) for user in spec.users
    )
    return (
        "# rendered by fogmesh-broker render-nats; do not edit\n"
        "# passwords: quoted here when set where it ran, else $VARs of each member's"
        " environment (docs/cluster.md)\n"
        "accounts: {\n"
        f"  {ACCOUNT}: {{\n"
        "    # MQTT sessions, retained messages and QoS 1 deliveries live in JetStream\n"
        "    jetstream: enabled\n"
        "    users: [\n"
        f"{blocks}\n"
        "    ]\n"
        "  }\n"
        "}\n"
    )


def _member(mesh: MeshSpec, name: str, members: list[ClusterMember], index: int) -> str:
    spec = mesh.brokers[name]
    me = members[index]
    replicas = min(spec.cluster.replicas if spec.cluster else 3, len(members))
    cluster_name = spec.cluster.name if spec.cluster else name
    store = data_dir_of(mesh, name).absolute() / me.name
    routes = [f"nats://{m.host}:{m.route_port}" for m in members if m is not me]
    lines = [
        "# rendered by fogmesh-broker render-nats; do not edit",
        f"server_name: {json.dumps(me.name)}",
        f"host: {json.dumps(me.host)}",
        f"port: {me.client_port}",
    ]
    if me.monitor_port is not None:
        lines.append(f"http: {json.dumps(f'{me.host}:{me.monitor_port}')}")
    lines += [
        "include ./accounts.conf",
        "jetstream: {",
        f"  store_dir: {json.dumps(str(store))}",
        "}",
        "cluster: {",
        f"  name: {json.dumps(cluster_name)}",
        f"  host: {json.dumps(me.host)}",
        f"  port: {me.route_port}",
        f"  routes: {json.dumps(routes)}",
        "}",
        "mqtt: {",
        f"  host: {json.dumps(me.host)}",
        f"  port: {me.mqtt_port}",
        "  # every session, retained message and pending QoS 1 delivery on this many members",
        f"  stream_replicas: {replicas}",
        '  ack_wait: "30s"',
        "  max_ack_pending: 1000",
        "}",
    ]
    return "\n".join(lines) + "\n"


def render_nats(
    mesh: MeshSpec,
    name: str,
    out: Path,
    *,
    members: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[list[Path], list[str]]:
    """Write ``member-N.conf`` for each member of broker ``name`` and ``accounts.conf``, with
    the passwords whose variables ``environ`` (default ``os.environ``) sets.

    Returns the files written and notes: each member's addresses, and the password variables
    its environment must hold.
    """
    out.mkdir(parents=True, exist_ok=True)
    out = out.resolve()
    chosen = cluster_members(mesh, name, members)
    env = os.environ if environ is None else environ
    variables = [password_env(u.username) for u in mesh.brokers[name].users]
    passwords = {var: env[var] for var in variables if env.get(var)}
    unset = [var for var in variables if var not in passwords]
    texts = {"accounts.conf": _accounts(mesh, name, passwords)}
    for i in range(len(chosen)):
        texts[f"member-{i + 1}.conf"] = _member(mesh, name, chosen, i)
    written: list[Path] = []
    for fname, text in texts.items():
        path = out / fname
        mode = 0o600 if fname == "accounts.conf" and passwords else 0o644
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        os.fchmod(fd, mode)  # an existing file keeps its mode through O_CREAT
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        written.append(path)
    notes = [
        f"member {m.name}: mqtt {m.host}:{m.mqtt_port}, nats {m.host}:{m.client_port},"
        f" routes {m.host}:{m.route_port}"
        + (f", monitor {m.host}:{m.monitor_port}" if m.monitor_port else "")
        for m in chosen
    ]
    start = "start each member with nats-server -c member-N.conf"
    if unset:
        start += f" and these set (each a plain word: NATS parses it): {' '.join(unset)}"
    notes.append(start)
    return written, notes
