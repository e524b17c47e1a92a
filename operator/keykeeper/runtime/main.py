"""Running the operator process: settings, logging, kopf, and the Runtime."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys

import kopf

from keykeeper.kube.client import Kube, load_client
from keykeeper.runtime import memory
from keykeeper.runtime.hardening import harden_process
from keykeeper.runtime.process import Runtime
from keykeeper.runtime.settings import Settings

_FORMATS = {"json": kopf.LogFormat.JSON, "plain": kopf.LogFormat.PLAIN, "full": kopf.LogFormat.FULL}


def run_operator(args: argparse.Namespace) -> int:
    harden_process()  # before any key material exists in this process
    memory.tune()  # before the first large response is read
    try:
        settings = _settings(args)
    except ValueError as exc:
        print(f"keykeeper run: invalid setting: {exc}", file=sys.stderr)
        return 2
    kopf.configure(verbose=args.verbose, log_format=_FORMATS[settings.log_format])
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)  # one line per watch event

    import keykeeper.runtime.handlers  # noqa: F401  (registers the handlers)

    runtime = Runtime(settings, Kube(load_client()))
    asyncio.run(
        kopf.operator(
            clusterwide=True,
            standalone=True,
            # kopf would otherwise name itself after the UID's passwd entry, and the
            # image's UID (65532, or whatever a cluster assigns) has none
            identity=settings.instance,  # type: ignore[arg-type]  # kopf's private NewType of str
            memo=kopf.Memo(runtime=runtime),
        )
    )
    return 0


def _settings(args: argparse.Namespace) -> Settings:
    """The environment's settings, with the flags given over them (``ValueError``)."""
    settings = Settings.from_env()
    overrides = {
        "namespace": args.namespace,
        "audit_log": args.audit_log,
        "log_format": args.log_format,
        "http_address": args.http_address,
        "leader_election": args.leader_elect,
        "passphrase_file": args.passphrase_file,
    }
    return dataclasses.replace(settings, **{k: v for k, v in overrides.items() if v is not None})
