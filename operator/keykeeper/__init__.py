"""keykeeper: a Kubernetes operator that keeps API keys encrypted at rest.

Values are sealed in envelopes (``keykeeper.crypto``) under data keys wrapped by a
key provider (``keykeeper.providers``), and projected as Secrets only into
namespaces that a KeyPolicy authorizes.
"""

__version__ = "0.1.0"
