"""Developer tools shared by ``make dev``, the tests and the benchmarks.

* ``controlplane`` — the pinned upstream etcd + kube-apiserver (a Go module), its
  builder and its launcher (certificates, RBAC, identities, the apiserver audit log);
* ``operator`` — the keykeeper operator as a separate process under its shipped RBAC
  and admission policy;
* ``kk`` — builders of KeyPolicies and ApiKeys and an admin's small verbs;
* ``softhsm`` — a real SoftHSM2 token in a temporary directory;
* ``fuzzing`` — the generator and invariants of the fuzz of hostile specs.

Nothing here imports ``tests``; the tests import this.
"""
