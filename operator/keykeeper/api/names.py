"""Kubernetes object names, checked before they reach a request path.

Every name keykeeper reads from a spec (a namespace, a Secret's name, a policy's
name) is hostile input: pasted into ``/api/v1/namespaces/{ns}/secrets/{name}``
unchecked, ``../../kube-system/secrets/x`` becomes a read of another namespace's
Secret. The CRDs refuse such names at admission; this module refuses them again
where paths are built, so a bypassed schema (an old CRD, a direct etcd write, a
bug) still cannot steer a request. The rules are Kubernetes' own:

* a DNS-1123 **label** (namespaces): ``[a-z0-9]([-a-z0-9]*[a-z0-9])?``, 1-63 chars;
* a DNS-1123 **subdomain** (Secrets, ConfigMaps, custom resources): labels joined
  by dots, 1-253 chars;
* a Secret **data key**: ``[-._a-zA-Z0-9]+``, 1-253 chars, and not ``.`` or ``..``.
"""

from __future__ import annotations

import re

from keykeeper.errors import InvalidName

LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DATA_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
LABEL_MAX = 63
SUBDOMAIN_MAX = 253
DATA_KEY_MAX = 253

_LABEL = re.compile(LABEL_PATTERN)
_SUBDOMAIN = re.compile(SUBDOMAIN_PATTERN)
_DATA_KEY = re.compile(DATA_KEY_PATTERN)


def is_label(text: str) -> bool:
    return 0 < len(text) <= LABEL_MAX and _LABEL.fullmatch(text) is not None


def is_subdomain(text: str) -> bool:
    return 0 < len(text) <= SUBDOMAIN_MAX and _SUBDOMAIN.fullmatch(text) is not None


def is_data_key(text: str) -> bool:
    return (
        0 < len(text) <= DATA_KEY_MAX
        and text not in (".", "..")
        and _DATA_KEY.fullmatch(text) is not None
    )


def _shown(text: str) -> str:
    """A name as an error message may show it: short, printable, quoted."""
    clipped = text[:64] + ("..." if len(text) > 64 else "")
    return repr("".join(c if c.isprintable() else "?" for c in clipped))


def namespace(text: str) -> str:
    """``text`` if it is a namespace name (a DNS-1123 label); else :class:`InvalidName`."""
    if not isinstance(text, str) or not is_label(text):
        raise InvalidName(f"{_shown(str(text))} is not a namespace name (a DNS-1123 label)")
    return text


def object_name(text: str) -> str:
    """``text`` if it is an object name (a DNS-1123 subdomain); else :class:`InvalidName`."""
    if not isinstance(text, str) or not is_subdomain(text):
        raise InvalidName(f"{_shown(str(text))} is not an object name (a DNS-1123 subdomain)")
    return text


def data_key(text: str) -> str:
    if not isinstance(text, str) or not is_data_key(text):
        raise InvalidName(f"{_shown(str(text))} is not a Secret data key ([-._a-zA-Z0-9]+)")
    return text
