"""``logs`` with ``follow_s``: a bounded stream of a workload's new output to its requester.

A follow answers first with the tail (``seq`` 0), then, about once a second, with the lines
written since (``seq`` 1, 2, ...), and ends with a reply whose ``final`` is set: when its
``follow_s`` have passed, when a ``logs`` command of the same tenant names it in
``end_follow``, or when the workload's output cannot be read any more. New lines are told
apart by counting the lines stamped since the follow began, which both runtimes keep in
order (``Runtime.logs`` with ``since``); a follow that outgrows the runtime's window starts
counting again from then, so a burst of more than :data:`WINDOW` lines a second may lose some.
At most :data:`PER_TENANT` follows of one tenant run on a node at once.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

import structlog

from fogmesh.bus import MessageContext, Refusal
from fogmesh.protocol import ErrorCode, LogsCommand, LogsReply

__all__ = ["PER_TENANT", "WINDOW", "LogFollows"]

log = structlog.get_logger("fogmesh.agent.logs")

WINDOW = 10_000
"""The most lines one poll reads (the ``tail`` limit of a logs command)."""
PER_TENANT = 8
POLL_S = 1.0
RETRY_AFTER_S = 10.0
"""What a follow refused over the tenant's limit is told to wait."""
BATCH = 500
"""The most lines in one reply of a stream (more go in the next ones)."""

ReadLogs = Callable[[int, float | None], Awaitable[list[str]]]


class LogFollows:
    """The follows running on this node, keyed by (tenant, correlation id)."""

    def __init__(self, *, poll_s: float = POLL_S) -> None:
        self.poll_s = poll_s
        self._ends: dict[tuple[str, str], asyncio.Event] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def end(self, tenant: str, correlation_id: str) -> bool:
        """Ask the follow ``correlation_id`` of ``tenant`` to end; False if there is none."""
        event = self._ends.get((tenant, correlation_id))
        if event is None:
            return False
        event.set()
        return True

    def start(self, command: LogsCommand, ctx: MessageContext, read: ReadLogs) -> None:
        """Begin streaming (the tail first); refused ``unavailable`` over the tenant's limit."""
        tenant = command.tenant or ""
        key = (tenant, command.correlation_id)
        if key in self._ends:
            raise Refusal(ErrorCode.CONFLICT, "a follow with this correlation_id runs already")
        if sum(1 for t, _ in self._ends if t == tenant) >= PER_TENANT:
            raise Refusal(
                ErrorCode.UNAVAILABLE,
                f"at most {PER_TENANT} log follows per tenant run on a node",
                details={"retry_after_s": RETRY_AFTER_S},
            )
        self._ends[key] = asyncio.Event()
        task = asyncio.create_task(self._stream(key, command, ctx, read), name="logs-follow")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Cancel every follow (the agent is stopping)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _stream(
        self, key: tuple[str, str], command: LogsCommand, ctx: MessageContext, read: ReadLogs
    ) -> None:
        ended = self._ends[key]
        deadline = time.monotonic() + command.follow_s
        seq = 0
        reason = "time is up"

        async def send(lines: list[str], *, final: bool = False) -> None:
            nonlocal seq
            for start in range(0, max(len(lines), 1), BATCH):
                chunk = lines[start : start + BATCH]
                last = final and start + BATCH >= len(lines)
                await ctx.reply(
                    LogsReply.to(
                        command, source=ctx.bus.config.client_id, workload=command.workload,
                        lines=chunk, seq=seq, final=last,
                    )
                )  # fmt: skip
                seq += 1

        try:
            origin = float(math.floor(time.time()))
            tail = await read(command.tail, command.since)
            seen = len(await read(WINDOW, origin))
            await send(tail)
            while not ended.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    async with asyncio.timeout(min(self.poll_s, left)):
                        await ended.wait()
                    reason = "ended by request"
                except TimeoutError:
                    pass
                current = await read(WINDOW, origin)
                fresh = current[seen:] if len(current) >= seen else current
                seen = len(current)
                if seen >= WINDOW:  # the window is full: count again from now on
                    origin, seen = float(math.floor(time.time())), 0
                    seen = len(await read(WINDOW, origin))
                if fresh and not ended.is_set():
                    await send(fresh)
                elif fresh:
                    await send(fresh, final=True)
                    return
            await send([], final=True)
        except Refusal as refusal:  # the workload went away meanwhile
            reason = refusal.message
            await ctx.reply_error(refusal.info())
        except Exception:
            log.exception("log follow failed", workload=command.workload)
            reason = "failed"
            await ctx.reply_error(
                Refusal(ErrorCode.INTERNAL, f"log follow of {command.workload} failed").info()
            )
        finally:
            self._ends.pop(key, None)
            log.info("log follow ended", workload=command.workload, reason=reason, replies=seq)
