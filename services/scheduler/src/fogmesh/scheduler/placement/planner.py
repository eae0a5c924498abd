"""Place an app's workloads: filter the nodes, then pick the cheapest (see ``cost``).

For each workload the planner keeps the nodes whose facts pass the component's constraints
(cached per view), drops those without the free CPU and memory, those already running a workload
of the same name, those that break anti-affinity and, when the component has affinity, those
not running the target component, and those where a device the component asks for is held by
another workload (devices are exclusive unless the node's config marks them shared; see
docs/devices.md), and picks the node of lowest cost (ties: lowest node id).
It scans the passing nodes in the view's ranked order (a lower bound of each node's cost,
ascending) and stops at the first bound above the best cost found, so a decision looks at the
few nodes that can win rather than at the whole fleet.
Each decision is added to the planner's own record of the free resources of the nodes it
chose (the view's figures elsewhere), so later decisions see earlier ones; the view itself is
never changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet

from fogmesh.protocol.apps import Unschedulable
from fogmesh.protocol.manifest import AppManifest, ComponentSpec
from fogmesh.protocol.node import DeviceInfo
from fogmesh.scheduler.placement.constraints import Constraints
from fogmesh.scheduler.placement.cost import MIN_REMAINING, spread_factor
from fogmesh.scheduler.placement.model import Plan, Want
from fogmesh.scheduler.placement.view import ClusterView

__all__ = ["MAX_REASONS", "Planner", "all_wants", "ordered_components", "workload_name"]

MAX_REASONS = 1000
"""At most this many per-node reasons in an unschedulable answer (all are counted)."""
_EPS = 1e-9


def _exclusive_names(infos: Sequence[DeviceInfo], requests: Iterable[str]) -> set[str]:
    """The names of the node's devices that ``requests`` name (by name, path or properties)
    and that are not shared; a request the node does not describe counts as its own name.
    A request by properties counts every device it matches: the agent picks one of them, so
    while another workload holds any, the plan cannot tell which is free (safe, not tight)."""
    out = set()
    for request in requests:
        matched = [d for d in infos if d.answers(request)]
        if not matched:
            out.add(request)
        out.update(d.name for d in matched if not d.shared)
    return out


def workload_name(app: str, component: str, replica: int) -> str:
    """``{app}-{component}-{replica}``."""
    return f"{app}-{component}-{replica}"


def ordered_components(manifest: AppManifest) -> list[ComponentSpec]:
    """Components with their affinity targets first (manifest order otherwise)."""
    done: list[ComponentSpec] = []
    names: set[str] = set()
    pending = list(manifest.components)
    while pending:
        ready = [c for c in pending if all(t in names for t in c.affinity)] or pending[:1]
        comp = ready[0]
        pending.remove(comp)
        done.append(comp)
        names.add(comp.name)
    return done


def all_wants(manifest: AppManifest) -> list[Want]:
    """Every replica of every component, affinity targets first."""
    return [Want(c.name, r) for c in ordered_components(manifest) for r in range(c.replicas)]


class Planner:
    """Plans workloads of one app (one tenant, one version) against a :class:`ClusterView`."""

    def __init__(
        self, view: ClusterView, manifest: AppManifest, tenant: str, *, version: str | None = None
    ) -> None:
        """``version`` (default: the manifest's) picks which placed workloads of the app count
        for affinity, anti-affinity and spread; other versions only take up resources and names.
        """
        self.view = view
        self.manifest = manifest
        self.tenant = tenant
        app_key = (tenant, manifest.name, manifest.version if version is None else version)
        # the free CPU and memory left on the nodes this plan chose (elsewhere: the view's);
        # a plan touches a few nodes, so this is cheaper than a copy of the fleet's figures
        self.taken: dict[int, tuple[float, float]] = {}
        self.occ: dict[str, dict[int, int]] = {
            c.name: dict(view.occupancy.get((*app_key, c.name), {})) for c in manifest.components
        }
        self.app_occ: dict[int, int] = dict(view.app_occupancy.get(app_key, {}))
        self.new_names: dict[str, set[int]] = {}
        # per node, the (workload, devices) this plan put there: later decisions see their holds
        self.new_devices: dict[int, list[tuple[str, tuple[str, ...]]]] = {}
        self._constraints = {c.name: Constraints.of(manifest, c) for c in manifest.components}

    def place(
        self, wants: Iterable[Want], *, exclude: Sequence[str] = (), partial: bool = False
    ) -> Plan:
        """Place each want in order; stop at the first failure unless ``partial``.

        ``exclude`` lists node ids that must not be chosen (e.g. a node being drained).
        """
        plan = Plan()
        banned_nodes = {self.view.index[n] for n in exclude if n in self.view.index}
        for want in wants:
            idx = self._choose(want, banned_nodes)
            if idx is None:
                plan.failures.append(self._explain(want, banned_nodes))
                if not partial:
                    break
                continue
            self._commit(want, idx)
            name = workload_name(self.manifest.name, want.component, want.replica)
            plan.placements[name] = self.view.nodes[idx].id
        return plan

    # --- the decision --------------------------------------------------------------------------

    def _conflicts(self, comp: ComponentSpec, name: str) -> tuple[set[int], set[int] | None]:
        """Nodes ruled out (name clash, anti-affinity) and nodes required (affinity), if any."""
        taken = self.view.name_nodes.get((self.tenant, name), ())
        banned = set(taken) | self.new_names.get(name, set())
        for other in comp.anti_affinity:
            banned.update(self.occ[other])
        for peer in self.manifest.components:
            if comp.name in peer.anti_affinity:
                banned.update(self.occ[peer.name])
        required: set[int] | None = None
        for target in comp.affinity:
            if self.manifest.component(target).replicas == 0:
                continue
            hosts = set(self.occ[target])
            required = hosts if required is None else required & hosts
        banned.update(self._device_holders(comp, name))
        return banned, required

    def _device_holders(self, comp: ComponentSpec, name: str) -> set[int]:
        """Nodes where an exclusive device the component asks for is held by another workload
        (one placed already, or one this plan put there); only nodes having the devices count,
        so a plan without devices costs nothing here."""
        wanted = self._constraints[comp.name].devices
        if not wanted:
            return set()
        held: set[int] = set()
        for i in self.view.static_candidates(self._constraints[comp.name]):
            node = self.view.nodes[i]
            exclusive = _exclusive_names(node.facts.device_info, wanted)
            if not exclusive:
                continue
            users = [
                (w.tenant, w.name, w.devices)
                for w in node.workloads
                if (w.tenant, w.name) != (self.tenant, name)
            ]
            users += [(self.tenant, n, devs) for n, devs in self.new_devices.get(i, [])]
            for _, other, devices in users:
                if other != name and exclusive & _exclusive_names(node.facts.device_info, devices):
                    held.add(i)
                    break
        return held

    def _choose(self, want: Want, excluded: set[int]) -> int | None:
        comp = self.manifest.component(want.component)
        name = workload_name(self.manifest.name, comp.name, want.replica)
        cons = self._constraints[comp.name]
        banned, required = self._conflicts(comp, name)
        banned |= excluded
        ranked: Iterable[tuple[float, int]]
        if required is None and not cons.pins:
            ranked = self.view.candidates(cons, self.manifest.data_source)
        else:
            # few hosts: scan them by id, with a bound that never stops the scan early
            hosts = self.view.static_candidates(cons)
            ranked = [(0.0, i) for i in hosts if required is None or i in required]
        touched = {
            i: spread_factor(self.occ[comp.name].get(i, 0), count)
            for i, count in self.app_occ.items()
        }
        for i in banned:
            touched[i] = -1.0
        creq, mreq = comp.cpu_request, float(comp.memory_request)
        cpu_free, mem_free = self.view.cpu_free, self.view.mem_free
        taken = self.taken
        cpu_cap, mem_cap = self.view.cpu_cap, self.view.mem_cap
        busy = self.view.cpu_busy
        latency = self.view.latencies(self.manifest.data_source)
        best_cost, best = float("inf"), -1
        for bound, i in ranked:
            if bound > best_cost:
                break
            mine = taken.get(i)
            if mine is None:
                cpu_left = cpu_free[i] - creq
                mem_left = mem_free[i] - mreq
            else:
                cpu_left = mine[0] - creq
                mem_left = mine[1] - mreq
            if cpu_left < -_EPS or mem_left < 0:
                continue
            cap = cpu_cap[i]
            remaining = (cpu_left - busy[i]) / cap if cap > 0 else 0.0
            cap = mem_cap[i]
            mem_frac = mem_left / cap if cap > 0 else 0.0
            remaining = min(remaining, mem_frac)
            remaining = max(remaining, MIN_REMAINING)
            cost = latency[i] / remaining
            factor = touched.get(i)
            if factor is not None:
                if factor < 0:
                    continue
                cost *= factor
            if cost < best_cost or (cost == best_cost and i < best):
                best_cost, best = cost, i
        return None if best < 0 else best

    def _commit(self, want: Want, idx: int) -> None:
        comp = self.manifest.component(want.component)
        cpu, mem = self.free(idx)
        self.taken[idx] = (cpu - comp.cpu_request, mem - comp.memory_request)
        occ = self.occ[comp.name]
        occ[idx] = occ.get(idx, 0) + 1
        self.app_occ[idx] = self.app_occ.get(idx, 0) + 1
        name = workload_name(self.manifest.name, comp.name, want.replica)
        self.new_names.setdefault(name, set()).add(idx)
        devices = tuple(sorted(self._constraints[comp.name].devices))
        if devices:
            self.new_devices.setdefault(idx, []).append((name, devices))

    def free(self, i: int) -> tuple[float, float]:
        """Node ``i``'s CPU (cores) and memory (bytes) free for this plan's next decision."""
        mine = self.taken.get(i)
        return (self.view.cpu_free[i], self.view.mem_free[i]) if mine is None else mine

    # --- the explanation -----------------------------------------------------------------------

    def _explain(self, want: Want, excluded: set[int]) -> Unschedulable:
        """Why each node was refused for ``want``."""
        comp = self.manifest.component(want.component)
        name = workload_name(self.manifest.name, comp.name, want.replica)
        cons = self._constraints[comp.name]
        banned, required = self._conflicts(comp, name)
        taken = self.view.name_nodes.get((self.tenant, name), ())
        names = set(taken) | self.new_names.get(name, set())
        held = self._device_holders(comp, name)
        reasons: dict[str, str] = {}
        counts: dict[str, int] = {}
        for i, node in enumerate(self.view.nodes):
            reason = cons.reason(node)
            if reason is None:
                reason = self._dynamic_reason(
                    comp, i, excluded=excluded, names=names, banned=banned, required=required,
                    held=held,
                )  # fmt: skip
            reason = reason or "not chosen"
            category = reason.split(":", 1)[0]
            counts[category] = counts.get(category, 0) + 1
            if len(reasons) < MAX_REASONS:
                reasons[node.id] = reason
        if not self.view.nodes:
            counts["no nodes"] = 1
        return Unschedulable(
            component=comp.name,
            replica=want.replica,
            reasons=reasons,
            reason_counts=counts,
            truncated=max(0, len(self.view.nodes) - MAX_REASONS),
        )

    def _dynamic_reason(
        self,
        comp: ComponentSpec,
        i: int,
        *,
        excluded: set[int],
        names: set[int],
        banned: set[int],
        required: set[int] | None,
        held: AbstractSet[int] = frozenset(),
    ) -> str | None:
        if i in excluded:
            return "excluded: node is being drained"
        if i in names:
            return "name: a workload of the same name is already on this node"
        if i in held:
            return "device: a device it asks for is held by another workload (not shared)"
        if i in banned:
            return f"anti-affinity: conflicts with a component on this node ({comp.name})"
        if required is not None and i not in required:
            return f"affinity: node does not run {', '.join(comp.affinity)}"
        cpu_free, mem_free = self.free(i)
        if cpu_free - comp.cpu_request < -_EPS:
            free = max(cpu_free, 0.0)
            return f"cpu: {free:.3f} cores free, needs {comp.cpu_request:g}"
        if mem_free - comp.memory_request < 0:
            free_mib = max(mem_free, 0.0) / 2**20
            return f"memory: {free_mib:.1f} MiB free, needs {comp.memory_request / 2**20:.1f} MiB"
        return None
