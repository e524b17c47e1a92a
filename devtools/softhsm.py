"""A real SoftHSM2 token in a temporary directory, for the PKCS#11 tests.

SoftHSM2 reads its configuration file from ``SOFTHSM2_CONF`` when the module is first
loaded, so the token is made once per test session, before anything loads the module.
The tests do not skip when SoftHSM2 is missing: ``.ci/run`` installs it, and a missing
peer is a failure to set up, reported as such.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)


@dataclass(frozen=True)
class Token:
    module: str
    label: str
    pin: str
    # A second token, same PIN. PKCS#11 login state is per application and token, so a
    # test of a wrong PIN needs a token nothing in the process has logged in to yet.
    spare_label: str = "keykeeper-spare"


def init_token(directory: Path, label: str = "keykeeper-test", pin: str = "4711-test-pin") -> Token:
    util = shutil.which("softhsm2-util")
    module = next((m for m in MODULE_CANDIDATES if Path(m).exists()), None)
    if util is None or module is None:
        raise RuntimeError(
            "SoftHSM2 is not installed (apt-get install -y softhsm2); "
            "the PKCS#11 tests need a real token"
        )
    tokens = directory / "tokens"
    tokens.mkdir(parents=True, exist_ok=True)
    conf = directory / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    os.environ["SOFTHSM2_CONF"] = str(conf)
    token = Token(module=module, label=label, pin=pin)
    for name in (token.label, token.spare_label):
        subprocess.run(
            [
                util,
                "--init-token",
                "--free",
                "--label",
                name,
                "--pin",
                pin,
                "--so-pin",
                "so-" + pin,
            ],
            check=True,
            capture_output=True,
        )
    return token
