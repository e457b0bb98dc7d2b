"""Readers per domain -> manifests and datasets; patient-level splits."""

from medssl.data.domains import DOMAINS, Domain, get_domain, register_domain
from medssl.data.manifest import ErrorLog, read_errors, read_manifest, validate_manifest, write_manifest
from medssl.data.splits import assign_patient_splits

__all__ = [
    "DOMAINS",
    "Domain",
    "ErrorLog",
    "assign_patient_splits",
    "get_domain",
    "read_errors",
    "read_manifest",
    "register_domain",
    "validate_manifest",
    "write_manifest",
]
