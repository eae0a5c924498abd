"""The topic tree: one builder per kind of topic, and one parser for all of them.

Every builder validates each id it is given (see :func:`fogmesh.protocol.check_id`), so a topic
built here never holds a wildcard, an empty level or a control character. :func:`parse_topic`
is the inverse: it turns a concrete topic back into a :class:`TopicRef`, and refuses anything
outside the tree.

The tree (``ROOT`` is ``fm/v1``)::

    fm/v1/nodes/{node}/hello|state|heartbeat|desired|actual
    fm/v1/nodes/{node}/cmd/{verb}
    fm/v1/api/{tenant}/{resource}/{action}
    fm/v1/events/fleet/{kind}
    fm/v1/events/tenants/{tenant}/{kind}
    fm/v1/data/{tenant}/{app}/{stream}
    fm/v1/devices/{tenant}/{app}/{node}/{device}
    fm/v1/reply/{account}/{client}
    fm/v1/mesh/{broker}/links/{link}
    fm/v1/leases/{duty}
    fm/v1/ops/{duty}/{verb}
    fm/v1/ops/{duty}/reply/{client}
    fm/v1/audit/{account}
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, TypeVar

from fogmesh.protocol._ids import check_id, check_topic
from fogmesh.protocol.errors import ContractError

if TYPE_CHECKING:  # the builders take these enums (or their values); no import cycle at run time
    from fogmesh.protocol.apps import AppAction
    from fogmesh.protocol.commands import NodeVerb
    from fogmesh.protocol.events import EventKind

__all__ = [
    "NODE_CHANNELS",
    "ROOT",
    "NodeChannel",
    "TopicKind",
    "TopicRef",
    "api",
    "api_filter",
    "audit",
    "audit_filter",
    "data",
    "data_filter",
    "device_reading",
    "device_readings_filter",
    "events_filter",
    "fleet_event",
    "fleet_event_filter",
    "lease",
    "mesh_link",
    "mesh_link_filter",
    "node",
    "node_cmd",
    "node_cmd_filter",
    "node_filter",
    "ops",
    "ops_filter",
    "ops_reply",
    "parse_topic",
    "reply",
    "tenant_event",
    "tenant_event_filter",
]

ROOT = "fm/v1"
_T = TypeVar("_T")


class NodeChannel(StrEnum):
    """The fixed per-node topics."""

    HELLO = "hello"
    STATE = "state"
    HEARTBEAT = "heartbeat"
    DESIRED = "desired"
    ACTUAL = "actual"
    TROUBLE = "trouble"


NODE_CHANNELS = frozenset(NodeChannel)


class TopicKind(StrEnum):
    """What a topic is for; the ``kind`` of a :class:`TopicRef`."""

    NODE = "node"
    NODE_CMD = "node_cmd"
    API = "api"
    FLEET_EVENT = "fleet_event"
    TENANT_EVENT = "tenant_event"
    DATA = "data"
    DEVICE_READING = "device_reading"
    REPLY = "reply"
    MESH_LINK = "mesh_link"
    LEASE = "lease"
    OPS = "ops"
    OPS_REPLY = "ops_reply"
    AUDIT = "audit"


@dataclass(frozen=True, slots=True)
class TopicRef:
    """A parsed topic: its kind and the ids it carries (the others are ``None``)."""

    kind: TopicKind
    node: str | None = None
    channel: NodeChannel | None = None
    verb: str | None = None
    tenant: str | None = None
    resource: str | None = None
    action: str | None = None
    event: str | None = None
    app: str | None = None
    stream: str | None = None
    account: str | None = None
    client: str | None = None
    broker: str | None = None
    link: str | None = None
    duty: str | None = None
    device: str | None = None

    def topic(self) -> str:  # noqa: PLR0912 -- one case per kind of topic
        """Build the topic string back from this reference."""
        match self.kind:
            case TopicKind.NODE:
                return node(_req(self.node), _req(self.channel))
            case TopicKind.NODE_CMD:
                return node_cmd(_req(self.node), _req(self.verb))
            case TopicKind.API:
                return api(_req(self.tenant), _req(self.resource), _req(self.action))
            case TopicKind.FLEET_EVENT:
                return fleet_event(_req(self.event))
            case TopicKind.TENANT_EVENT:
                return tenant_event(_req(self.tenant), _req(self.event))
            case TopicKind.DATA:
                return data(_req(self.tenant), _req(self.app), _req(self.stream))
            case TopicKind.DEVICE_READING:
                return device_reading(
                    _req(self.tenant), _req(self.app), _req(self.node), _req(self.device)
                )
            case TopicKind.REPLY:
                return reply(_req(self.account), _req(self.client))
            case TopicKind.MESH_LINK:
                return mesh_link(_req(self.broker), _req(self.link))
            case TopicKind.LEASE:
                return lease(_req(self.duty))
            case TopicKind.OPS:
                return ops(_req(self.duty), _req(self.verb))
            case TopicKind.OPS_REPLY:
                return ops_reply(_req(self.duty), _req(self.client))
            case TopicKind.AUDIT:
                return audit(_req(self.account))
        raise ContractError(f"unknown topic kind {self.kind!r}")  # pragma: no cover


def _req(value: _T | None) -> _T:
    if value is None:
        raise ContractError("topic reference is missing a part")
    return value


def node(node_id: str, channel: NodeChannel | str) -> str:
    """``fm/v1/nodes/{node}/{channel}``: hello, state, heartbeat, desired or actual."""
    try:
        chan = NodeChannel(channel)
    except ValueError as exc:
        raise ContractError(f"unknown node channel {channel!r}") from exc
    return f"{ROOT}/nodes/{check_id(node_id, what='node')}/{chan.value}"


def node_filter(channel: NodeChannel | str) -> str:
    """A subscription filter for one channel of every node: ``fm/v1/nodes/+/{channel}``."""
    return f"{ROOT}/nodes/+/{NodeChannel(channel).value}"


def node_cmd(node_id: str, verb: NodeVerb | str) -> str:
    """``fm/v1/nodes/{node}/cmd/{verb}``: a command to one node's agent."""
    return f"{ROOT}/nodes/{check_id(node_id, what='node')}/cmd/{check_id(verb, what='verb')}"


def node_cmd_filter(node_id: str) -> str:
    """Every command to one node's agent: ``fm/v1/nodes/{node}/cmd/+``."""
    return f"{ROOT}/nodes/{check_id(node_id, what='node')}/cmd/+"


def api(tenant: str, resource: str, action: AppAction | str) -> str:
    """``fm/v1/api/{tenant}/{resource}/{action}``: a user request, e.g. ``apps/deploy``."""
    return (
        f"{ROOT}/api/{check_id(tenant, what='tenant')}/"
        f"{check_id(resource, what='resource')}/{check_id(action, what='action')}"
    )


def api_filter(resource: str, action: AppAction | str | None = None) -> str:
    """Every tenant's requests for one resource (and action): ``fm/v1/api/+/{resource}/+``."""
    act = "+" if action is None else check_id(action, what="action")
    return f"{ROOT}/api/+/{check_id(resource, what='resource')}/{act}"


def fleet_event(kind: EventKind | str) -> str:
    """``fm/v1/events/fleet/{kind}``: node joined / lost and other fleet-wide events."""
    return f"{ROOT}/events/fleet/{check_id(kind, what='event kind')}"


def tenant_event(tenant: str, kind: EventKind | str) -> str:
    """``fm/v1/events/tenants/{tenant}/{kind}``: events about one tenant's apps and workloads."""
    tenant_id = check_id(tenant, what="tenant")
    return f"{ROOT}/events/tenants/{tenant_id}/{check_id(kind, what='event kind')}"


def events_filter() -> str:
    """Every event, the fleet's and every tenant's: ``fm/v1/events/#``."""
    return f"{ROOT}/events/#"


def fleet_event_filter(kind: EventKind | str | None = None) -> str:
    """Fleet events of one kind, or of every kind: ``fm/v1/events/fleet/+``."""
    return f"{ROOT}/events/fleet/{'+' if kind is None else check_id(kind, what='event kind')}"


def tenant_event_filter(tenant: str | None = None, kind: EventKind | str | None = None) -> str:
    """One tenant's events (every tenant's for None) of one kind or of every kind:
    ``fm/v1/events/tenants/{tenant}/+``."""
    tenant_id = "+" if tenant is None else check_id(tenant, what="tenant")
    kind_id = "+" if kind is None else check_id(kind, what="event kind")
    return f"{ROOT}/events/tenants/{tenant_id}/{kind_id}"


def data(tenant: str, app: str, stream: str) -> str:
    """``fm/v1/data/{tenant}/{app}/{stream}``: an app's own data plane."""
    return (
        f"{ROOT}/data/{check_id(tenant, what='tenant')}/{check_id(app, what='app')}/"
        f"{check_id(stream, what='stream')}"
    )


def data_filter(tenant: str, app: str) -> str:
    """Every stream of one app: ``fm/v1/data/{tenant}/{app}/#``."""
    return f"{ROOT}/data/{check_id(tenant, what='tenant')}/{check_id(app, what='app')}/#"


def device_reading(tenant: str, app: str, node_id: str, device: str) -> str:
    """``fm/v1/devices/{tenant}/{app}/{node}/{device}``: the lines the shared reader of
    ``node`` reads from a streamed device (``ttyUSB0``) for an app holding it. A level of its
    own, so the broker lets a node publish there only under its own name (docs/devices.md)."""
    return (
        f"{ROOT}/devices/{check_id(tenant, what='tenant')}/{check_id(app, what='app')}/"
        f"{check_id(node_id, what='node')}/{check_id(device, what='device')}"
    )


def device_readings_filter(tenant: str, app: str, node_id: str | None = None) -> str:
    """Every streamed device's readings for one app, from one node (every node for None):
    ``fm/v1/devices/{tenant}/{app}/{node}/+``."""
    where = "+" if node_id is None else check_id(node_id, what="node")
    return f"{ROOT}/devices/{check_id(tenant, what='tenant')}/{check_id(app, what='app')}/{where}/+"


def reply(account: str, client: str) -> str:
    """``fm/v1/reply/{account}/{client}``: where one bus client receives its replies.

    ``account`` is the broker account (username) the client connects as, or the tenant it asks
    for; the broker's ACLs let only that account (or tenant) read it, so replies stay private
    even on brokers that do not tie client ids to accounts.
    """
    return f"{ROOT}/reply/{check_id(account, what='account')}/{check_id(client, what='client')}"


def mesh_link(broker: str, link: str) -> str:
    """``fm/v1/mesh/{broker}/links/{link}``: retained status of one bridge link."""
    return f"{ROOT}/mesh/{check_id(broker, what='broker')}/links/{check_id(link, what='link')}"


def mesh_link_filter() -> str:
    """Every bridge link's status, on every broker: ``fm/v1/mesh/+/links/+``."""
    return f"{ROOT}/mesh/+/links/+"


def lease(duty: str) -> str:
    """``fm/v1/leases/{duty}``: retained holder of a single-writer duty (e.g. ``scheduler``)."""
    return f"{ROOT}/leases/{check_id(duty, what='duty')}"


def ops(duty: str, verb: str) -> str:
    """``fm/v1/ops/{duty}/{verb}``: a platform-internal request to the holder of a duty's lease
    (e.g. ``scheduler/move``, the migrator's). Only service accounts may publish under
    ``fm/v1/ops``: neither tenants nor nodes are granted anything there."""
    return f"{ROOT}/ops/{check_id(duty, what='duty')}/{check_id(verb, what='verb')}"


def ops_filter(duty: str) -> str:
    """Every internal request to one duty's holder: ``fm/v1/ops/{duty}/+``."""
    return f"{ROOT}/ops/{check_id(duty, what='duty')}/+"


def ops_reply(duty: str, client: str) -> str:
    """``fm/v1/ops/{duty}/reply/{client}``: where a client serving a duty gets its replies
    when its bus names that duty (``BusConfig.reply_duty``).

    Unlike ``fm/v1/reply/#``, which WAN links carry everywhere, this tree goes wherever the
    duty's own requests go: a site cache's (``ops/cache-{site}``) only down its own site's link,
    so what one site pulls from the cloud crosses no other site's link. Only service accounts
    may publish or read under ``fm/v1/ops``.
    """
    return f"{ROOT}/ops/{check_id(duty, what='duty')}/reply/{check_id(client, what='client')}"


def audit(account: str) -> str:
    """``fm/v1/audit/{account}``: the audit records of the service that connects as
    ``account`` (see :mod:`fogmesh.protocol.audit`); only operators read them."""
    return f"{ROOT}/audit/{check_id(account, what='account')}"


def audit_filter() -> str:
    """Every service's audit records: ``fm/v1/audit/+``."""
    return f"{ROOT}/audit/+"


def parse_topic(topic: str) -> TopicRef:  # noqa: PLR0912 -- one case per kind of topic
    """Parse a concrete topic of the tree into a :class:`TopicRef`.

    Raises :class:`ContractError` for wildcards, illegal ids and topics outside the tree.
    """
    check_topic(topic)
    levels = topic.split("/")
    if levels[:2] != ROOT.split("/"):
        raise ContractError(f"topic {topic!r} is not under {ROOT}/")
    rest = levels[2:]
    match rest:
        case ["nodes", node_id, channel] if channel in NODE_CHANNELS:
            return TopicRef(TopicKind.NODE, node=node_id, channel=NodeChannel(channel))
        case ["nodes", node_id, "cmd", verb]:
            return TopicRef(TopicKind.NODE_CMD, node=node_id, verb=verb)
        case ["api", tenant, resource, action]:
            return TopicRef(TopicKind.API, tenant=tenant, resource=resource, action=action)
        case ["events", "fleet", kind]:
            return TopicRef(TopicKind.FLEET_EVENT, event=kind)
        case ["events", "tenants", tenant, kind]:
            return TopicRef(TopicKind.TENANT_EVENT, tenant=tenant, event=kind)
        case ["data", tenant, app, stream]:
            return TopicRef(TopicKind.DATA, tenant=tenant, app=app, stream=stream)
        case ["devices", tenant, app, node_id, device]:
            return TopicRef(
                TopicKind.DEVICE_READING, tenant=tenant, app=app, node=node_id, device=device
            )
        case ["reply", account, client]:
            return TopicRef(TopicKind.REPLY, account=account, client=client)
        case ["mesh", broker, "links", link]:
            return TopicRef(TopicKind.MESH_LINK, broker=broker, link=link)
        case ["leases", duty]:
            return TopicRef(TopicKind.LEASE, duty=duty)
        case ["ops", duty, verb]:
            return TopicRef(TopicKind.OPS, duty=duty, verb=verb)
        case ["ops", duty, "reply", client]:
            return TopicRef(TopicKind.OPS_REPLY, duty=duty, client=client)
        case ["audit", account]:
            return TopicRef(TopicKind.AUDIT, account=account)
    raise ContractError(f"topic {topic!r} is not part of the fogmesh tree")
