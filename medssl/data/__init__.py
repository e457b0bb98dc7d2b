"""Readers per domain -> manifests and datasets; patient-level splits.

Names are re-exported lazily (see medssl.lazy).
"""

from medssl.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "DOMAINS": "medssl.data.domains",
        "Domain": "medssl.data.domains",
        "get_domain": "medssl.data.domains",
        "register_domain": "medssl.data.domains",
        "ErrorLog": "medssl.data.manifest",
        "read_errors": "medssl.data.manifest",
        "read_manifest": "medssl.data.manifest",
        "validate_manifest": "medssl.data.manifest",
        "write_manifest": "medssl.data.manifest",
        "assign_patient_splits": "medssl.data.splits",
    },
)
