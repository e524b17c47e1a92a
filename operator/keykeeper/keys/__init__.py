"""The operator's own key material: the master key's subkeys and the cluster's sealing keys."""
