"""The keykeeper.dev/v1alpha1 contract: CRD models, names, durations, conditions, labels,
reasons."""
