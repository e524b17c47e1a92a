"""What a real node is configured with: containerd's config, the CNI network, the
kubelet's and kube-proxy's configuration files. Pure: paths and addresses in, text out.

Everything lives under the node's work folder (containerd's root and state, the
kubelet's root, Pod logs), so a node leaves nothing behind in /var/lib; what cannot
(the bridge, iptables chains, network namespaces under /run/netns) is removed by
``Node.stop`` through the CRI, as kubelet would on drain.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

POD_SUBNET = "10.244.0.0/24"
BRIDGE = "kk-cni0"  # not cni0: leaves a machine's own CNI bridge alone
PAUSE_IMAGE = "registry.k8s.io/pause:3.10.2"


@dataclass(frozen=True)
class Layout:
    """Where one node keeps its state."""

    workdir: Path

    @property
    def socket(self) -> Path:
        return self.workdir / "containerd" / "containerd.sock"

    @property
    def endpoint(self) -> str:
        return f"unix://{self.socket}"

    @property
    def runc_root(self) -> Path:
        """runc's state of this node's containers, one folder per containerd namespace
        (not /run/containerd/runc: another engine's containers are never listed, nor
        reaped)."""
        return self.workdir / "runc"

    @property
    def cni_conf(self) -> Path:
        return self.workdir / "cni" / "net.d"

    @property
    def kubelet_root(self) -> Path:
        return self.workdir / "kubelet"

    @property
    def pod_logs(self) -> Path:
        return self.workdir / "pod-logs"


def containerd_toml(layout: Layout, bin_dir: Path, runc: str) -> str:
    """containerd 2's config (version 3): its own root, state and socket; the CRI
    plugin with runc (cgroupfs, as the kubelet), the CNI bridge, the pause image
    pinned (it was imported, no registry serves it here). ``restrict_oom_score_adj``:
    a machine without CAP_SYS_RESOURCE (this sandbox's bounding set lacks it) cannot
    give a process a negative OOM score, which the CRI asks for every Pod sandbox
    (-998); restricted, containerd asks no lower than its own score instead."""
    c = layout.workdir / "containerd"
    return f"""version = 3
root = "{c / "root"}"
state = "{c / "state"}"

[grpc]
  address = "{layout.socket}"

[ttrpc]
  address = "{layout.socket}.ttrpc"

[plugins."io.containerd.cri.v1.runtime"]
  enable_selinux = false
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "{runc}"
        Root = "{layout.runc_root}"
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["{bin_dir / "cni"}"]
    conf_dir = "{layout.cni_conf}"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{PAUSE_IMAGE}"

[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
"""


def cni_conflist(layout: Layout) -> str:
    """One bridge network with host-local addresses (their leases kept in the node's
    folder, not /var/lib/cni), masquerade out, port mappings."""
    return json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": "keykeeper",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": True,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": str(layout.workdir / "cni" / "ipam"),
                        "ranges": [[{"subnet": POD_SUBNET}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        },
        indent=2,
    )


def kubelet_config(layout: Layout, ca: Path, port: int, healthz: int) -> dict[str, object]:
    """KubeletConfiguration: client certificates and webhook authorization (the
    apiserver reaches it for logs, exec and port-forward), the cgroupfs driver on this
    machine's cgroup v1, no swap check, and no image garbage collection (the images
    were imported: nothing could pull them back)."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": "0.0.0.0",
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca)},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": layout.endpoint,
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "failSwapOn": False,
        "podLogsDir": str(layout.pod_logs),
        "resolvConf": "/etc/resolv.conf",
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
        },
        "serializeImagePulls": False,
        "staticPodPath": "",
        "syncFrequency": "10s",
        "fileCheckFrequency": "10s",
        "nodeStatusUpdateFrequency": "5s",
        "makeIPTablesUtilChains": False,  # no KUBE-FIREWALL left on the machine after
        "oomScoreAdj": 0,  # its default, -999, needs CAP_SYS_RESOURCE (see containerd_toml)
    }


def kube_proxy_config(kubeconfig: Path, node: str, metrics: int, healthz: int) -> dict[str, object]:
    """KubeProxyConfiguration: iptables mode, so a Pod reaches the ``kubernetes``
    Service's ClusterIP; conntrack left as the machine has it."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": node,
        "mode": "iptables",
        "clusterCIDR": POD_SUBNET,
        "conntrack": {"maxPerCore": 0},
        "metricsBindAddress": f"127.0.0.1:{metrics}",
        "healthzBindAddress": f"127.0.0.1:{healthz}",
    }
