"""Start-up: every known key waits in the sweep lane, and kopf's first list, which
delivers each key again, is no change (so a change made meanwhile is not queued
behind 100,000 keys)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from keykeeper.api.models import API_VERSION
from keykeeper.crypto.kdf import MasterKey
from keykeeper.kube.paths import apikey_path
from keykeeper.kube.world import World
from keykeeper.runtime.assembly import assemble, preload
from keykeeper.runtime.settings import Settings
from tests.unit.fakekube import FakeKube


def test_preloaded_keys_wait_in_the_sweep_and_their_relist_is_no_change(tmp_path: Path) -> None:
    kube = FakeKube()
    for n in range(3):
        kube.put(
            apikey_path("home", f"k{n}"),
            {"apiVersion": API_VERSION, "kind": "ApiKey", "spec": {"policy": "p"}},
        )
    keys = [kube.objects[apikey_path("home", f"k{n}")] for n in range(3)]

    async def listing(path: str, label_selector: str = "") -> list[dict[str, Any]]:
        return keys if path.endswith("/apikeys") else []  # the fake lists no cluster scope

    async def paging(path: str, label_selector: str = "", limit: int = 250) -> Any:
        yield await listing(path, label_selector)

    kube.list = listing  # type: ignore[method-assign]
    kube.pages = paging  # type: ignore[method-assign]
    world = World()
    parts = assemble(
        Settings(audit_log=tmp_path / "a.jsonl"),
        kube,
        world,
        MasterKey(b"k" * 32),  # type: ignore[arg-type]
    )
    asyncio.run(preload(kube, world, parts))  # type: ignore[arg-type]
    assert parts.queue.depth == 3
    relisted = kube.objects[apikey_path("home", "k1")]
    assert not world.echoes.key_changed(("home", "k1"), relisted)
    edited = {**relisted, "metadata": {**relisted["metadata"], "generation": 2}}
    assert world.echoes.key_changed(("home", "k1"), edited)
