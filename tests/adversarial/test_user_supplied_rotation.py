"""Finding K17 — a rotation replacing a user-supplied value with a random one.

An imported (or sealed) key under a policy with the default ``Generate`` strategy used
to get a random value at its first requested or scheduled rotation: the team's real
credential (a Stripe key, say) was replaced in every target by a string no upstream
service accepts, and the key stopped following its source. A user-supplied value now
rotates only when its source does: the request waits as RotationPending with
``RotationDue=True AwaitingNewValue``, the projected value stays the source's, and a
changed source Secret then becomes the new version.
"""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
from devtools.kk import Cluster, apikey, condition, keypolicy, unique
from devtools.operator import Operator, wait_for

from tests.cluster import Leaks

pytestmark = pytest.mark.cluster


def test_a_requested_rotation_of_an_imported_key_waits_for_its_source(
    operator: Operator, kk: Cluster, leaks: Leaks
) -> None:
    home = kk.namespace("home")
    policy = unique("pol")
    kk.create(keypolicy(policy))  # rotation.strategy: Generate (the default)
    first = b"sk_live_" + unique("a").encode()
    second = b"sk_live_" + unique("b").encode()
    leaks.add(first)
    leaks.add(second)
    kk.put_secret(home, "src", {"api-key": first}, importable_by="k")
    kk.create(
        apikey(
            home,
            "k",
            policy,
            projections=[{"namespace": home}],
            source={"secretRef": {"name": "src"}},
        )
    )
    wait_for(lambda: kk.value(home, "k") == first, what="the imported value projected")

    time.sleep(1.1)  # the request (seconds, as `keykeeper rotate` writes it) after version 1
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    kk.patch_key(
        home, "k", {"metadata": {"annotations": {"keykeeper.dev/rotate-requested-at": now}}}
    )
    due = wait_for(
        lambda: (
            (c := condition(kk.key(home, "k"), "RotationDue")).get("reason") == "AwaitingNewValue"
            and c
        ),
        what="the rotation waiting for a new source value",
    )
    assert due["status"] == "True" and "user-supplied" in due["message"]
    assert kk.value(home, "k") == first, "the user's value is still the one projected"
    assert (kk.key(home, "k") or {})["status"]["currentVersion"] == 1

    patch = {"data": {"api-key": base64.b64encode(second).decode()}}
    kk.core.patch_namespaced_secret("src", home, patch)  # the source rotates
    wait_for(
        lambda: kk.value(home, "k") == second, timeout=90, what="the new source value projected"
    )
    assert kk.value(home, "k", "api-key.previous") == first, "the old one overlaps for the grace"
