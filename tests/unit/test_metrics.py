"""The metrics: what a scrape shows of the world, histograms over all keys, the per-key series and their labels,
KMS calls counted at the guard, and the HTTP endpoints."""

from __future__ import annotations

import asyncio
import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from keykeeper.errors import ProviderUnavailable
from keykeeper.kube.world import World
from keykeeper.runtime import metrics
from keykeeper.runtime.keyfacts import KeyFactsBook, key_facts
from keykeeper.runtime.serving import Server, parse_address


def scrape() -> dict[str, list[Any]]:
    text = metrics.generate_latest_text()
    found: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append(sample)
    return found


def test_a_scrape_counts_keys_by_phase_and_ages_by_bucket() -> None:
    now = 2_000_000_000.0
    snapshot = metrics.Snapshot(
        phases={"Active": 3, "Suspended": 1},
        version_ages=(10.0, 2 * metrics.DAY, 400 * metrics.DAY),
        to_rotation=(-5.0, 3 * metrics.HOUR),
        queue_depth=7,
        leader=True,
        leader_transitions=2,
        ready=True,
    )
    metrics.WORLD.snapshot = lambda: snapshot
    try:
        found = scrape()
    finally:
        metrics.WORLD.snapshot = metrics.Snapshot
    by_phase = {s.labels["phase"]: s.value for s in found["keykeeper_keys"]}
    assert by_phase == {"Active": 3, "Suspended": 1}
    ages = {s.labels["le"]: s.value for s in found["keykeeper_key_version_age_seconds_bucket"]}
    assert ages["3600.0"] == 1 and ages["604800.0"] == 2 and ages["+Inf"] == 3
    assert found["keykeeper_key_version_age_seconds_count"][0].value == 3
    assert found["keykeeper_key_version_age_seconds_max"][0].value == 400 * metrics.DAY
    assert found["keykeeper_key_next_rotation_seconds_min"][0].value == -5.0
    assert found["keykeeper_workqueue_depth"][0].value == 7
    assert found["keykeeper_leader"][0].value == 1
    assert now  # the snapshot, not the clock, decides


def test_key_facts_come_from_the_status_and_survive_garbage() -> None:
    status = {
        "phase": "Active",
        "nextRotationAt": "2030-01-01T00:00:00Z",
        "versions": [
            {"version": 1, "state": "Previous", "createdAt": "2020-01-01T00:00:00Z"},
            {"version": 2, "state": "Current", "createdAt": "2029-01-01T00:00:00+00:00"},
        ],
    }
    facts = key_facts(status)
    assert facts.phase == "Active"
    assert facts.version_created == pytest.approx(1861920000.0)
    assert facts.next_rotation == pytest.approx(1893456000.0)
    junk = key_facts(
        {"phase": None, "nextRotationAt": "soon", "versions": ["x", 3], "conditions": [7, "x"]}
    )
    assert junk == ("Pending", None, None, "", False, None)


@pytest.mark.parametrize(
    ("conditions", "expiry", "unprojected"),
    [
        ([], "", False),
        ([{"type": "Expiring", "status": "True"}], "Expiring", False),
        ([{"type": "Expiring", "status": "True"}, {"type": "Expired", "status": "True"}],
         "Expired", False),
        ([{"type": "Expiring", "status": "Unknown"}], "", False),
    ],
)  # fmt: skip
def test_what_the_alerts_count_of_a_key(
    conditions: list[dict[str, str]], expiry: str, unprojected: bool
) -> None:
    facts = key_facts({"phase": "Active", "conditions": conditions})
    assert (facts.expiry, facts.unprojected) == (expiry, unprojected)


@pytest.mark.parametrize(
    ("targets", "unprojected"),
    [({}, False), ({"failed": 0, "denied": 3}, False), ({"failed": 2}, True),
     ({"failed": "2"}, False), ([1, 2], False)],
)  # fmt: skip
def test_only_a_failed_target_is_a_projection_failing(
    targets: dict[str, object], unprojected: bool
) -> None:
    facts = key_facts({"phase": "Active", "targets": targets})
    assert facts.unprojected is unprojected


@pytest.mark.parametrize(
    "phase", ['Active"} 1\nkeykeeper_leader 1', "x" * 5000, "active", 7, ["Active"]]
)
def test_a_phase_outside_the_closed_set_never_becomes_a_label(phase: object) -> None:
    """Whoever can write an ApiKey's status must not mint label values (cardinality,
    or a forged series in the exposition)."""
    assert key_facts({"phase": phase}).phase == "Unknown"


def test_the_world_keeps_facts_per_key_and_forgets_dropped_keys() -> None:
    world, book = World(), KeyFactsBook()
    world.on_status = book.status_seen
    body = {
        "metadata": {"namespace": "a", "name": "k", "uid": "u", "generation": 1},
        "spec": {"policy": "p"},
        "status": {"phase": "Active"},
    }
    ref = world.put_key(body)
    assert book.facts[ref].phase == "Active"
    world.wrote_status(ref, {"metadata": {"resourceVersion": "9"}, "status": {"phase": "Revoked"}})
    assert book.facts[ref].phase == "Revoked", "the operator's own write counts at once"
    book.note_generation(ref, body, 5.0)
    assert book.changed_at[ref] == (1, 5.0)
    world.drop_key(ref)
    assert ref not in book.facts and ref not in book.changed_at


def with_snapshot(snapshot: metrics.Snapshot) -> dict[str, list[Any]]:
    metrics.WORLD.snapshot = lambda: snapshot
    try:
        return scrape()
    finally:
        metrics.WORLD.snapshot = metrics.Snapshot


def test_per_key_series_name_the_key_its_owner_and_its_expiry_state() -> None:
    book = KeyFactsBook(owner_label="keykeeper.dev/owner")
    keys = {
        ("payments", "stripe"): (
            {"keykeeper.dev/owner": "team-pay"},
            {
                "valueExpiresAt": "2030-01-01T00:00:00Z",
                "conditions": [{"type": "Expiring", "status": "True"}],
            },
        ),
        ("payments", "old"): (
            {"keykeeper.dev/owner": "bad value!"},  # not a label value: no owner
            {
                "valueExpiresAt": "2020-01-01T00:00:00Z",
                "conditions": [{"type": "Expired", "status": "True"}],
            },
        ),
        ("web", "rotating"): ({}, {"nextRotationAt": "2030-01-01T00:00:00Z"}),
        ("web", "plain"): ({"keykeeper.dev/owner": "web"}, {"phase": "Active"}),
    }
    for (namespace, name), (labels, status) in keys.items():
        body = {"metadata": {"namespace": namespace, "name": name, "labels": labels}}
        book.note_generation((namespace, name), body, 0.0)
        book.status_seen((namespace, name), status)
    found = with_snapshot(metrics.Snapshot(per_key=book.series()))
    expiry = {
        (s.labels["namespace"], s.labels["name"], s.labels["owner"], s.labels["state"]): s.value
        for s in found["keykeeper_key_expiry_timestamp_seconds"]
    }
    assert expiry == {
        ("payments", "stripe", "team-pay", "expiring"): pytest.approx(1893456000.0),
        ("payments", "old", "", "expired"): pytest.approx(1577836800.0),
    }
    due = {
        (s.labels["namespace"], s.labels["name"], s.labels["owner"]): s.value
        for s in found["keykeeper_key_rotation_due_timestamp_seconds"]
    }
    assert due == {("web", "rotating", ""): pytest.approx(1893456000.0)}
    assert found["keykeeper_per_key_series"][0].value == 1
    book.status_seen(("payments", "stripe"), None)
    assert ("payments", "stripe") not in book.owners, "a deleted key's owner is forgotten"


def test_per_key_series_off_exports_none_and_says_so() -> None:
    book = KeyFactsBook()  # no owner label: the chart's metrics.perKeySeries=false
    book.note_generation(("a", "k"), {"metadata": {"labels": {"keykeeper.dev/owner": "x"}}}, 0)
    assert not book.owners
    found = with_snapshot(metrics.Snapshot())
    assert found["keykeeper_per_key_series"][0].value == 0
    assert "keykeeper_key_expiry_timestamp_seconds" not in found


def test_a_provider_is_up_until_its_breaker_opens_and_again_once_a_probe_answers() -> None:
    from keykeeper.providers.guard import Guarded

    class Down:
        provider_id = "aws"
        capabilities: frozenset[str] = frozenset()
        healthy = False

        def current_kek_id(self) -> str:
            if not self.healthy:
                raise ProviderUnavailable("the KMS does not answer")
            return "kek"

        def check(self) -> None:
            self.current_kek_id()

    probes: list[Any] = []
    inner = Down()
    guarded = Guarded(
        inner,  # type: ignore[arg-type]
        rate=100,
        burst=10,
        timeout=1,
        schedule=lambda _delay, probe: probes.append(probe),
    )
    assert not guarded.down
    with pytest.raises(ProviderUnavailable):
        guarded.current_kek_id()
    assert guarded.down
    found = with_snapshot(metrics.Snapshot(providers_down={("aws", "alias/k"): guarded.down}))
    shown = [
        (s.labels["provider"], s.labels["key_ref"], s.value) for s in found["keykeeper_provider_up"]
    ]
    assert shown == [("aws", "alias/k", 0.0)]
    probes.pop()()  # still down: probed again later
    assert guarded.down and probes
    inner.healthy = True
    probes.pop()()
    assert not guarded.down


def test_kms_calls_errors_and_latency_are_counted_by_provider_and_operation() -> None:
    from keykeeper.providers.guard import Guarded

    class Flaky:
        provider_id = "unit-kms"
        capabilities = frozenset()

        def current_kek_id(self) -> str:
            raise ProviderUnavailable("down")

        def check(self) -> None:
            return None

        def close(self) -> None:
            return None

    guard = Guarded(
        Flaky(),  # type: ignore[arg-type]
        rate=100,
        burst=10,
        timeout=1.0,
        schedule=lambda d, f: None,
        observer=metrics.KmsMetrics(),
    )
    with pytest.raises(ProviderUnavailable):
        guard.current_kek_id()
    with pytest.raises(ProviderUnavailable):  # the breaker refuses: an error, not a call
        guard.current_kek_id()
    found = scrape()

    def value(name: str) -> float:
        return sum(
            s.value
            for s in found.get(name, [])
            if s.labels.get("provider") == "unit-kms"
            and s.labels.get("operation") == "current_kek_id"
        )

    assert value("keykeeper_kms_requests_total") == 1
    assert value("keykeeper_kms_errors_total") == 2
    assert value("keykeeper_kms_request_duration_seconds_count") == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (":8080", ("0.0.0.0", 8080)),
        ("127.0.0.1:9", ("127.0.0.1", 9)),
        ("[::1]:8080", ("::1", 8080)),
    ],
)
def test_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["8080", "host:", "host:http", ":0", ":70000"])
def test_bad_addresses_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not an address"):
        parse_address(text)


def test_the_endpoints_answer() -> None:
    from devtools.controlplane.launcher import free_port

    port = free_port()
    ready = [False]

    async def go() -> list[tuple[str, int, str]]:
        server = Server(f"127.0.0.1:{port}", lambda: ready[0])
        await server.start()

        def get(path: str) -> tuple[str, int, str]:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                    return path, r.status, r.read().decode()
            except urllib.error.HTTPError as exc:
                return path, exc.code, exc.read().decode()

        try:
            answers = [await asyncio.to_thread(get, "/healthz")]
            answers.append(await asyncio.to_thread(get, "/readyz"))
            ready[0] = True
            answers.append(await asyncio.to_thread(get, "/readyz"))
            answers.append(await asyncio.to_thread(get, "/metrics"))
            return answers
        finally:
            await server.stop()

    answers = asyncio.run(go())
    assert [(p, s) for p, s, _ in answers] == [
        ("/healthz", 200),
        ("/readyz", 503),
        ("/readyz", 200),
        ("/metrics", 200),
    ]
    assert "keykeeper_reconcile_duration_seconds_bucket" in answers[3][2]


def test_dropped_events_and_waited_out_429s_are_counted_in_a_scrape(tmp_path: Any) -> None:
    """EventSink.dropped and Kube.throttled were written and never read: a scrape shows
    them now, from the parts of a real assembly."""
    import asyncio

    from keykeeper.crypto.kdf import MasterKey
    from keykeeper.runtime.assembly import assemble
    from keykeeper.runtime.settings import Settings
    from tests.unit.fakekube import FakeKube

    kube = FakeKube()
    kube.throttled = 3  # type: ignore[attr-defined]
    parts = assemble(Settings(audit_log=tmp_path / "a.jsonl"), kube, World(), MasterKey(b"k" * 32))  # type: ignore[arg-type]
    flapping = {"metadata": {"name": "k", "namespace": "a", "uid": "u"}}

    async def flood() -> None:
        for _ in range(40):  # the per-object burst is 25
            await parts.sink.emit(flapping, "Normal", "Projected", "again")

    asyncio.run(flood())
    metrics.WORLD.snapshot = lambda: parts.snapshot(True, None, True)
    try:
        found = scrape()
    finally:
        metrics.WORLD.snapshot = metrics.Snapshot
    assert found["keykeeper_events_dropped_total"][0].value == 15
    assert found["keykeeper_api_throttled_total"][0].value == 3


def test_the_owner_read_on_the_namespace_cannot_be_forged_by_the_keys_author() -> None:
    """metrics.ownerFrom=namespace: a tenant's own owner label on the ApiKey is ignored;
    the Namespace's, which namespace rights cannot edit, is the series' owner."""
    book = KeyFactsBook(owner_label="keykeeper.dev/owner", owner_from_namespace=True)
    body = {"metadata": {"labels": {"keykeeper.dev/owner": "another-team"}}}
    book.note_generation(("payments", "k"), body, 0.0)
    book.status_seen(("payments", "k"), {"nextRotationAt": "2030-01-01T00:00:00Z"})
    assert not book.owners, "the ApiKey's label is not read"
    from keykeeper.core.authz import NamespaceInfo

    world = World()  # the operator's view of the Namespace, as the watch keeps it
    world.put_namespace(
        {"metadata": {"name": "payments", "labels": {"keykeeper.dev/owner": "team-pay"}}}
    )
    found = list(book.series(world.namespaces))
    assert [(s.namespace, s.name, s.owner) for s in found] == [("payments", "k", "team-pay")]
    assert [s.owner for s in book.series({"payments": NamespaceInfo("payments")})] == [""]
