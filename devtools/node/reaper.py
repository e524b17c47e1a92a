"""What a node leaves on the machine when the process that started it dies without
stopping it (a CI timeout's SIGKILL, a crashed test run): containerd's shims outlive it
by design, and with them the containers, their mounts, network namespaces, iptables
rules and the bridge.

Each node registers its work folder (``register``) under the per-machine cache, named
after the process that owns it. The next node to start reaps (``reap``) every folder
whose owner is gone: its containers killed and deleted through runc (each node has a
runc root of its own, so nothing of another container engine is touched), every
process still naming the folder killed, its mounts undone, then the folder removed.
When no node is left running, the bridge and the CNI's masquerade rules go too.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
from pathlib import Path

from devtools import image
from devtools.node import config


def registry() -> Path:
    return image.cache() / "node" / "running"


def register(workdir: Path) -> Path:
    entry = registry() / str(os.getpid())
    entry.parent.mkdir(parents=True, exist_ok=True)
    with entry.open("a") as out:
        out.write(f"{workdir}\n")
    return entry


def unregister(workdir: Path) -> None:
    entry = registry() / str(os.getpid())
    if entry.exists():
        left = [w for w in entry.read_text().split() if w != str(workdir)]
        if left:
            entry.write_text("".join(f"{w}\n" for w in left))
        else:
            entry.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap(runc: str, kube_proxy: Path | None = None) -> list[Path]:
    """Clean every registered folder whose owner is dead; returns those cleaned. With
    no node left running, the bridge, its masquerade rules and (given kube-proxy)
    kube-proxy's chains go too."""
    cleaned = []
    folder = registry()
    for entry in sorted(folder.glob("*")) if folder.is_dir() else []:
        if entry.name.isdigit() and _alive(int(entry.name)):
            continue
        for line in entry.read_text().split():
            clean(Path(line), runc)
            cleaned.append(Path(line))
        entry.unlink()
    if not (folder.is_dir() and any(folder.glob("*"))):  # no node left running
        subprocess.run(["ip", "link", "del", config.BRIDGE], capture_output=True, check=False)
        _drop_masquerade_rules()
        if kube_proxy is not None:
            subprocess.run([str(kube_proxy), "--cleanup"], capture_output=True, check=False)
        _drop_localnet_firewall()
    return cleaned


def clean(workdir: Path, runc: str) -> None:
    """Everything of one dead node: its containers, processes, mounts, then its folder."""
    runc_root = config.Layout(workdir).runc_root
    # the shim gives runc <Root>/<containerd namespace> (k8s.io) as its root
    for root in sorted(str(r) for r in runc_root.iterdir()) if runc_root.is_dir() else []:
        listed = subprocess.run(
            [runc, "--root", root, "list", "-q"], capture_output=True, text=True
        )
        for container in listed.stdout.split():
            for verb in (["kill", "--all", container, "KILL"], ["delete", "--force", container]):
                subprocess.run([runc, "--root", root, *verb], capture_output=True, check=False)
    _kill_naming(str(workdir))
    unmount_under(workdir)
    shutil.rmtree(workdir, ignore_errors=True)


def _kill_naming(needle: str) -> None:
    """SIGKILL every process whose command line names ``needle`` (the shims do)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if needle in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                os.kill(int(proc.name), signal.SIGKILL)


def unmount_under(workdir: Path) -> None:
    """Every mount under the folder, deepest first (rootfs, shm, network namespaces)."""
    root = str(workdir) + "/"
    points = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    for point in sorted((p for p in points if p.startswith(root)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _drop_masquerade_rules() -> None:
    """The bridge plugin's masquerade rules of the ``keykeeper`` network, and their
    chains (a container's CNI DEL removes them; a killed node never ran it)."""
    listed = subprocess.run(
        ["iptables", "-t", "nat", "-S", "POSTROUTING"], capture_output=True, text=True
    )
    for line in listed.stdout.splitlines():
        if 'name: "keykeeper"' not in line.replace('\\"', '"'):
            continue
        rule = shlex.split(line)[1:]  # without -A
        subprocess.run(["iptables", "-t", "nat", "-D", *rule], capture_output=True, check=False)
        chain = rule[rule.index("-j") + 1] if "-j" in rule else ""
        if chain.startswith("CNI-"):
            subprocess.run(["iptables", "-t", "nat", "-F", chain], capture_output=True, check=False)
            subprocess.run(["iptables", "-t", "nat", "-X", chain], capture_output=True, check=False)


def _drop_localnet_firewall() -> None:
    """KUBE-FIREWALL (kube-proxy's and the kubelet's "block incoming localnet
    connections" rule, which ``--cleanup`` keeps), the kubelet's canary chains and the
    iptables-mode hint."""
    for tool in ("iptables", "ip6tables"):
        for hook in ("INPUT", "OUTPUT"):
            _iptables(tool, "filter", "-D", hook, "-j", "KUBE-FIREWALL")
        _iptables(tool, "filter", "-F", "KUBE-FIREWALL")
        _iptables(tool, "filter", "-X", "KUBE-FIREWALL")
        for table in ("filter", "nat", "mangle"):
            _iptables(tool, table, "-X", "KUBE-KUBELET-CANARY")
        _iptables(tool, "mangle", "-X", "KUBE-IPTABLES-HINT")


def _iptables(tool: str, table: str, *args: str) -> None:
    subprocess.run([tool, "-t", table, *args], capture_output=True, check=False)
