"""The fuzz in CI: a few hundred random and hostile specs, and every invariant checked.

See tests/adversarial/fuzzing.py for what is generated and checked; ``bench/fuzz.py``
runs the same with ten thousand specs and more. ``FUZZ_SEED`` replays a run.
"""

from __future__ import annotations

import os
import random

import pytest
from devtools.controlplane import ControlPlane
from devtools.fuzzing import Fuzz, crashes
from devtools.kk import Cluster, public_key
from devtools.operator import Operator, wait_for

from tests.cluster import Leaks

pytestmark = pytest.mark.cluster

SPECS = int(os.environ.get("FUZZ_SPECS", "300"))


def test_fuzzed_specs_never_crash_stick_or_overreach(
    control_plane: ControlPlane, operator: Operator, kk: Cluster, leaks: Leaks
) -> None:
    seed = int(os.environ.get("FUZZ_SEED", random.randrange(1 << 32)))
    print(f"FUZZ_SEED={seed}")
    fuzz = Fuzz(kk, seed, wait_for(lambda: public_key(control_plane)))
    fuzz.setup()
    fuzz.run(SPECS)
    stuck = fuzz.wait_settled(timeout=120)
    for value in fuzz.values:
        leaks.add(value)
    assert operator.alive()
    assert crashes(operator.log_text()) == []
    assert stuck == [], f"keys without a status for their generation (seed {seed}): {stuck[:10]}"
    assert fuzz.wait_in_scope(timeout=30) == [], f"seed {seed}"
    tried = fuzz.admitted["apikey"] + fuzz.rejected["apikey"]
    assert fuzz.admitted["apikey"] > tried // 5, f"the fuzz admitted too little: {fuzz.admitted}"
    print(f"admitted {dict(fuzz.admitted)}, rejected {dict(fuzz.rejected)}")
