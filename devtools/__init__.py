"""Developer tools shared by ``make dev``, the tests and the benchmarks.

* ``controlplane`` — the pinned upstream etcd + kube-apiserver (a Go module), its
  builder and its launcher (certificates, RBAC, identities, the apiserver audit log);
* ``operator`` — the keykeeper operator as a separate process under its shipped RBAC
  and admission policy;
* ``e2e`` — what the installed chart needs beyond the control plane: the controller
  manager and helm builds, and a view of the operator's Pods on the node;
* ``node`` — a real node: the upstream kubelet, kube-proxy and kube-scheduler on
  containerd 2, runc and the CNI bridge plugins, built from their Go modules;
* ``image`` — keykeeper's image built from the Dockerfile by buildah, on a Debian base
  made here from packages, and run by podman as the chart runs it;
* ``kk`` — builders of KeyPolicies and ApiKeys and an admin's small verbs;
* ``softhsm`` — a real SoftHSM2 token in a temporary directory;
* ``kmspeers`` — AWS KMS peers as processes: moto's server and local-kms;
* ``prometheus`` — a real Prometheus scraping the operator, keykeeper's alert rules loaded;
* ``argo`` — Argo Rollouts' own Rollout CRD, from its Go module, for restarts of Rollouts;
* ``fakes`` — in-repo fakes of Google Cloud KMS (gRPC) and Azure Key Vault (HTTPS),
  driven by the unmodified SDK clients, and an HTTPS issuer of keykeeper's webhook
  contract (``fakes.issuer``: counts mints per idempotency key and live upstream keys);
* ``peers`` — the peer controllers the fan-out bench compares with (Sealed Secrets,
  External Secrets), built from their Go modules;
* ``fuzzing`` — the generator and invariants of the fuzz of hostile specs;
* ``supplychain`` — the image's CycloneDX SBOM and the audit of its locked set.

Nothing here imports ``tests`` (an import-linter contract); the tests import this.
A layout test checks that this list names every module and package here.
"""
