"""Leader election on a Lease: who may lead, when a standby takes over, and that a
leader who cannot renew stops before anybody else may start (client-go's rules)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from keykeeper.errors import ApiUnavailable
from keykeeper.kube.paths import lease_path
from keykeeper.runtime.leadership import Durations, Elector
from tests.unit.fakekube import FakeKube

NS = "keykeeper-system"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def elector(kube: FakeKube, name: str, clock: Clock, lost: list[str] | None = None) -> Elector:
    wall = lambda: datetime.fromtimestamp(clock.now, UTC)  # noqa: E731
    return Elector(
        kube,
        NS,
        name,
        lambda: (lost if lost is not None else []).append(name),
        clock=clock,
        wall=wall,
    )


def quick_leader(kube: FakeKube, lost: list[str]) -> Elector:
    """A candidate on the loop's clock with sub-second durations."""
    a = elector(kube, "a", Clock(), lost)
    a.durations = Durations(lease=0.6, renew_deadline=0.4, retry_period=0.05)
    a._clock = lambda: asyncio.get_running_loop().time()
    return a


def holder(kube: FakeKube) -> str | None:
    return kube.objects[lease_path(NS, "keykeeper-leader")]["spec"].get("holderIdentity")


def test_the_standard_durations_and_their_order() -> None:
    assert Durations() == Durations(15.0, 10.0, 2.0)
    with pytest.raises(ValueError, match="retry period < renew deadline < lease"):
        Durations(lease=10.0, renew_deadline=10.0)


def test_the_first_replica_takes_a_missing_lease_and_the_second_waits() -> None:
    kube, clock = FakeKube(), Clock()
    a, b = elector(kube, "a", clock), elector(kube, "b", clock)

    async def go() -> None:
        assert await a.try_acquire_or_renew()
        assert not await b.try_acquire_or_renew()
        clock.now += 14.9  # a renews within the lease: b still waits
        assert await a.try_acquire_or_renew()
        clock.now += 14.9
        assert not await b.try_acquire_or_renew()

    asyncio.run(go())
    assert holder(kube) == "a"
    assert kube.objects[lease_path(NS, "keykeeper-leader")]["spec"]["leaseDurationSeconds"] == 15


def test_a_standby_takes_over_only_a_whole_lease_after_it_last_saw_a_renewal() -> None:
    kube, clock = FakeKube(), Clock()
    a, b = elector(kube, "a", clock), elector(kube, "b", clock)

    async def go() -> None:
        assert await a.try_acquire_or_renew()
        assert not await b.try_acquire_or_renew()  # b observes a's record now
        clock.now += 14.0  # a died: no renewal since
        assert not await b.try_acquire_or_renew()
        clock.now += 1.0
        assert await b.try_acquire_or_renew()

    asyncio.run(go())
    spec = kube.objects[lease_path(NS, "keykeeper-leader")]["spec"]
    assert (spec["holderIdentity"], spec["leaseTransitions"]) == ("b", 1)


def test_two_replicas_racing_for_a_free_lease_cannot_both_win() -> None:
    kube, clock = FakeKube(), Clock()
    a, b = elector(kube, "a", clock), elector(kube, "b", clock)

    async def go() -> list[bool]:
        assert await a.try_acquire_or_renew()
        await a.release()
        return list(await asyncio.gather(a.try_acquire_or_renew(), b.try_acquire_or_renew()))

    won = asyncio.run(go())
    assert won.count(True) == 1, won


def test_a_released_lease_is_taken_at_the_next_try() -> None:
    kube, clock = FakeKube(), Clock()
    a, b = elector(kube, "a", clock), elector(kube, "b", clock)

    async def go() -> None:
        task = asyncio.create_task(a.run())
        await asyncio.wait_for(a.leading.wait(), 5)
        task.cancel()
        await a.release()
        assert holder(kube) is None
        assert await b.try_acquire_or_renew()

    asyncio.run(go())
    assert holder(kube) == "b"


def test_a_leader_that_cannot_renew_stops_before_the_lease_runs_out() -> None:
    kube, lost = FakeKube(), []
    a = quick_leader(kube, lost)

    async def go() -> float:
        task = asyncio.create_task(a.run())
        await asyncio.wait_for(a.leading.wait(), 5)
        kube.fail = lambda method, path: ApiUnavailable("partitioned")
        cut = asyncio.get_running_loop().time()
        await asyncio.wait_for(task, 5)
        return asyncio.get_running_loop().time() - cut

    stopped_after = asyncio.run(go())
    assert lost == ["a"]
    assert not a.leading.is_set()
    assert stopped_after < 0.6, "stopped within the renew deadline, before the lease ended"


def test_a_standby_tries_again_when_the_observed_record_expires_not_a_tick_later() -> None:
    kube, clock = FakeKube(), Clock()
    a, b = elector(kube, "a", clock), elector(kube, "b", clock)

    async def go() -> list[float]:
        assert await a.try_acquire_or_renew()
        assert not await b.try_acquire_or_renew()  # b observes a's record at 1000.0
        waits = [b.next_try_in()]
        clock.now += 14.3
        waits.append(b.next_try_in())
        clock.now += 0.7
        waits.append(b.next_try_in())
        return waits

    waits = asyncio.run(go())
    assert waits[0] == 2.0, "a retry period while the expiry is far"
    assert waits[1] == pytest.approx(0.7), "the expiry, when it comes before the next tick"
    assert waits[2] == 0.01


def test_a_renewal_the_watch_delivers_restarts_the_wait_at_once() -> None:
    kube, clock = FakeKube(), Clock()
    b = elector(kube, "b", clock)
    spec = {"holderIdentity": "a_1", "renewTime": "t1", "leaseDurationSeconds": 15}
    b.observe(spec)
    clock.now += 10
    b.observe({**spec, "renewTime": "t2"})  # the watch delivers a's renewal
    assert b.expires_at == clock.now + 15
    b.observe({**spec, "renewTime": "t2"})  # the same record again: no new observation
    clock.now += 1
    assert b.expires_at == clock.now - 1 + 15


def test_a_released_lease_delivered_by_the_watch_wakes_a_standby_at_once() -> None:
    released = asyncio.Event

    class Watching(FakeKube):
        gone: asyncio.Event

        async def watch(self, path, query, seconds=240):  # type: ignore[no-untyped-def, override]
            await self.gone.wait()
            yield {"type": "MODIFIED", "object": {"spec": {"holderIdentity": None}}}
            await asyncio.sleep(3600)

    kube, clock = Watching(), Clock()
    a = elector(kube, "a", clock)
    b = elector(kube, "b", clock)
    b._clock = lambda: asyncio.get_running_loop().time()

    async def go() -> float:
        kube.gone = released()
        assert await a.try_acquire_or_renew()
        a.leading.set()
        task = asyncio.create_task(b.run())
        await asyncio.sleep(0.2)  # b tried, lost, and waits out its retry period (2 s)
        assert not b.leading.is_set()
        started = asyncio.get_running_loop().time()
        await a.release()
        kube.gone.set()
        await asyncio.wait_for(b.leading.wait(), 5)
        task.cancel()
        return asyncio.get_running_loop().time() - started

    assert asyncio.run(go()) < 1.0, "woken by the watch, not by the next retry tick"


def test_a_leader_whose_lease_was_taken_stops_within_the_renew_deadline() -> None:
    """Someone else wrote the Lease (another replica after a partition, or a forged
    holder): the leader cannot renew, and stops writing rather than share."""
    kube, lost = FakeKube(), []
    a = quick_leader(kube, lost)

    async def go() -> None:
        task = asyncio.create_task(a.run())
        await asyncio.wait_for(a.leading.wait(), 5)
        lease = kube.objects[lease_path(NS, "keykeeper-leader")]
        lease["spec"]["holderIdentity"] = "intruder"
        lease["spec"]["renewTime"] = "2030-01-01T00:00:00.000000Z"
        await asyncio.wait_for(task, 5)

    asyncio.run(go())
    assert lost == ["a"]
    assert holder(kube) == "intruder", "nothing was written over it"


def test_every_write_but_the_leases_is_fenced_by_current_leadership() -> None:
    """A standby writes nothing; a leader paused past its renew deadline (SIGSTOP, a
    frozen VM) writes nothing from the moment it resumes, before its renew loop runs."""
    from keykeeper.errors import NotLeading
    from keykeeper.kube.paths import secret_path

    kube, clock = FakeKube(), Clock()
    a = elector(kube, "a", clock)
    kube.write_guard = a.fence
    secret = {"metadata": {"name": "s", "namespace": "x"}}

    async def go() -> list[str]:
        seen = []
        try:
            await kube.create(secret_path("x"), secret)
        except NotLeading as exc:
            seen.append(f"standby: {exc}")
        assert await a.try_acquire_or_renew(), "the Lease's own writes pass"
        a.leading.set()
        await kube.create(secret_path("x"), secret)
        seen.append("leader: written")
        clock.now += 10.0  # paused for the renew deadline; nothing ran meanwhile
        for write in (
            kube.patch(secret_path("x", "s"), {"data": {}}),
            kube.delete(secret_path("x", "s")),
            kube.replace(secret_path("x", "s"), secret),
        ):
            try:
                await write
            except NotLeading:
                seen.append("paused: refused")
        assert await a.try_acquire_or_renew(), "renewing the Lease is never fenced"
        await kube.patch(secret_path("x", "s"), {"metadata": {"labels": {"a": "b"}}})
        seen.append("renewed: written")
        return seen

    seen = asyncio.run(go())
    assert seen[0].startswith("standby: POST /api/v1/namespaces/x/secrets refused")
    assert seen[1:] == ["leader: written", *["paused: refused"] * 3, "renewed: written"]
    writes = [r for r in kube.requests if r[0] != "GET" and "leases" not in r[1]]
    assert writes == [
        ("POST", "/api/v1/namespaces/x/secrets"),
        ("PATCH", "/api/v1/namespaces/x/secrets/s"),
    ], "a refused write never reached the API"
