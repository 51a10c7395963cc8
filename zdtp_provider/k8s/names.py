"""Kubernetes names and label values: validation with field-naming errors, and safe derivation.

Object names must be DNS-1123 labels (≤63 chars, ``[a-z0-9-]``) because Pods, Jobs and
Deployments all end up as hostnames or label values somewhere. Derived names that would be too
long are truncated *and* suffixed with a hash of the full input, so two long inputs never
collapse into the same name (a collision would make a retry adopt someone else's Job).
"""

from __future__ import annotations

import hashlib
import re

MAX_NAME = 63
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


class InvalidName(ValueError):
    """A user-supplied name or label that Kubernetes would reject; ``field`` says which input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def short_hash(*parts: object, length: int = 8) -> str:
    """Stable hex digest of ``parts``: used to keep derived names unique after truncation."""
    text = "\x1f".join(str(p) for p in parts)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def validate_dns_label(value: object, *, field: str) -> str:
    """Return ``value`` if it is a DNS-1123 label, else raise :class:`InvalidName` naming ``field``."""
    if not isinstance(value, str) or not value:
        raise InvalidName(field, "must be a non-empty string")
    if len(value) > MAX_NAME:
        raise InvalidName(field, f"{value!r} is {len(value)} characters, the limit is {MAX_NAME}")
    if not _DNS_LABEL.match(value):
        raise InvalidName(
            field, f"{value!r} is not a DNS-1123 label (lowercase letters, digits and '-', alphanumeric ends)"
        )
    return value


def validate_label(key: object, value: object, *, field: str) -> None:
    """Validate one label (qualified key and value) the way the API server does."""
    if not isinstance(key, str) or not key:
        raise InvalidName(field, f"label key {key!r} must be a non-empty string")
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        raise InvalidName(field, f"label key {key!r} has an invalid prefix {prefix!r}")
    if not _LABEL_NAME.match(name):
        raise InvalidName(field, f"label key {key!r} is invalid (name part ≤63 chars, alphanumeric ends)")
    if not isinstance(value, str):
        raise InvalidName(field, f"label {key!r} value must be a string, got {type(value).__name__}")
    if not _LABEL_VALUE.match(value):
        raise InvalidName(field, f"label {key!r} value {value!r} is invalid (≤63 chars, alphanumeric ends)")


def validate_labels(labels: dict[str, str] | None, *, field: str) -> dict[str, str]:
    for key, value in (labels or {}).items():
        validate_label(key, value, field=field)
    return dict(labels or {})


def validate_annotations(annotations: dict[str, str] | None, *, field: str) -> dict[str, str]:
    for key, value in (annotations or {}).items():
        validate_label(key, "x", field=field)
        if not isinstance(value, str):
            raise InvalidName(field, f"annotation {key!r} value must be a string")
    return dict(annotations or {})


def dns_label(*parts: str, max_length: int = MAX_NAME) -> str:
    """Join ``parts`` into a valid DNS-1123 label, hashing the tail away if it is too long.

    Invalid characters become ``-``. The result is deterministic: the same parts always give the
    same name, which is what lets a retry find the object its first try created.
    """
    raw = "-".join(p for p in parts if p)
    cleaned = re.sub(r"[^a-z0-9-]+", "-", raw.lower())
    cleaned = re.sub(r"-{2,}", "-", cleaned).strip("-") or "x"
    if len(cleaned) <= max_length and cleaned == raw:
        return cleaned
    if len(cleaned) <= max_length and cleaned != raw:
        # Lossy cleaning could merge distinct inputs; keep them apart with a hash when it fits.
        candidate = f"{cleaned}-{short_hash(raw)}"
        if len(candidate) <= max_length:
            return candidate
    digest = short_hash(raw)
    head = cleaned[: max_length - len(digest) - 1].rstrip("-")
    return f"{head}-{digest}"


def label_value(value: str) -> str:
    """Turn any string (an Airflow run id, say) into a valid label value, unique per input."""
    if _LABEL_VALUE.match(value) and len(value) <= MAX_NAME:
        return value
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", value)
    digest = short_hash(value)
    head = cleaned[: MAX_NAME - len(digest) - 1]
    head = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", head)
    return f"{head}-{digest}" if head else digest
