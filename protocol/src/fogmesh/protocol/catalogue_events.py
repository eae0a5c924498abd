"""Events, the apps' own data and device streams, and the reply topics every request is
answered on.

Rows of :data:`fogmesh.protocol.catalogue.CATALOGUE`, in its order."""

from __future__ import annotations

from fogmesh.protocol import events
from fogmesh.protocol.catalogue_spec import TopicSpec

__all__ = ["EVENTS"]

EVENTS: tuple[TopicSpec, ...] = (
    TopicSpec(
        "fm/v1/events/fleet/{kind}",
        events.Event,
        "registry, scheduler, agents",
        "registry, CLI, dashboards",
        1,
        False,
        "Fleet events: node joined / stale / lost / back, desired rejected.",
    ),
    TopicSpec(
        "fm/v1/events/tenants/{tenant}/{kind}",
        events.Event,
        "scheduler, agents",
        "registry, that tenant",
        1,
        False,
        "A tenant's events: app deployed / updated / deleted, placement failed, "
        "workload replaced, migrations.",
    ),
    TopicSpec(
        "fm/v1/data/{tenant}/{app}/{stream}",
        None,
        "sensors, apps",
        "apps, actuators",
        1,
        False,
        "The apps' own data plane; payloads are the app's own.",
        payload="the app's own bytes",
    ),
    TopicSpec(
        "fm/v1/devices/{tenant}/{app}/{node}/{device}",
        None,
        "node agent (its shared reader)",
        "that tenant's workloads of the app (on that node)",
        0,
        False,
        "One line read from a streamed device (docs/devices.md), for each app on the node "
        "holding it; a node publishes only under its own name, a tenant reads only its own.",
        payload="the line as read, without its newline",
    ),
    TopicSpec(
        "fm/v1/reply/{account}/{client}",
        None,
        "any service answering a request",
        "the requester",
        1,
        False,
        "Replies: the request's reply model, or `ErrorReply`. `{account}` is the tenant of an"
        " `api` request, else the requester's broker account; a service answers only there.",
        payload="the request's reply model",
    ),
    TopicSpec(
        "fm/v1/ops/{duty}/reply/{client}",
        None,
        "the service answering a request",
        "the requester (a service whose bus names that duty)",
        1,
        False,
        "Replies to a service that serves a duty (a site cache, `cache-{site}`): the request's"
        " reply model, or `ErrorReply`. WAN links carry it only where that duty's requests go,"
        " so a site's pulls from the cloud cross no other site's link; services only.",
        payload="the request's reply model",
    ),
)
