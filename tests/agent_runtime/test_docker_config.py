"""What a container may reach, decided without Docker: the host config and the names."""

from __future__ import annotations

import pytest

from fogmesh.agent.runtime.docker_config import host_config, host_escapes
from fogmesh.agent.runtime.docker_names import container_name, network_name, volume_name
from fogmesh.agent.runtime.errors import RuntimeFailure
from fogmesh.protocol.workload import RuntimeKind, WorkloadSpec


def spec(tenant: str, app: str, **extra: object) -> WorkloadSpec:
    """A Docker spec of ``tenant``'s ``app``."""
    return WorkloadSpec.model_validate(
        {
            "name": f"{app}-web-0",
            "tenant": tenant,
            "app": app,
            "component": "web",
            "runtime": RuntimeKind.DOCKER,
            "image": "busybox",
            **extra,
        }
    )


def test_host_config_reaches_nothing_of_the_host() -> None:
    """Limits yes; privileges, host paths, devices and host namespaces never."""
    mounts = [{"Type": "volume", "Source": "v", "Target": "/data"}]
    config = host_config(
        spec("acme", "shop", cpu_limit=0.5, memory_limit_bytes=1 << 26),
        "fm-acme",
        mounts,
        host_network_allowed=False,
    )
    assert config["Privileged"] is False
    assert config["SecurityOpt"] == ["no-new-privileges:true"]
    assert config["NanoCpus"] == 500_000_000
    assert config["Memory"] == 1 << 26
    assert host_escapes(config, host_network_allowed=False) == []


def test_host_network_only_when_the_operator_allows_it() -> None:
    """``docker_host_network`` is the operator's; without it a host network is refused."""
    with pytest.raises(RuntimeFailure, match="host network"):
        host_config(spec("acme", "shop"), "host", [], host_network_allowed=False)
    assert host_config(spec("acme", "shop"), "host", [], host_network_allowed=True)


@pytest.mark.parametrize(
    ("field", "value", "what"),
    [
        ("Privileged", True, "privileged"),
        ("Binds", ["/:/host"], "Binds"),
        ("Mounts", [{"Type": "bind", "Source": "/etc"}], "bind mount"),
        ("Devices", [{"PathOnHost": "/dev/sda"}], "devices"),
        ("CapAdd", ["SYS_ADMIN"], "capabilities"),
        ("PidMode", "host", "pid namespace"),
    ],
)
def test_every_host_escape_is_named(field: str, value: object, what: str) -> None:
    """The check names each way into the host."""
    found = host_escapes({"NetworkMode": "fm-acme", field: value}, host_network_allowed=True)
    assert len(found) == 1
    assert what in found[0]


def test_names_of_two_tenants_never_meet() -> None:
    """Equal app names of two tenants give different containers, networks and volumes, also
    where a ``-`` inside an id would make the joined names equal."""
    a, b = spec("acme", "shop"), spec("globex", "shop")
    assert container_name(a, "fm-n-") != container_name(b, "fm-n-")
    assert network_name("acme") != network_name("globex")
    assert volume_name(container_name(a, "fm-n-"), "data") != volume_name(
        container_name(b, "fm-n-"), "data"
    )
    tricky = spec("a-b", "c"), spec("a", "b-c")
    assert container_name(tricky[0], "") != container_name(tricky[1], "")
    assert container_name(spec("acme", "shop"), "") == "acme-shop-web-0"  # the paper's form
