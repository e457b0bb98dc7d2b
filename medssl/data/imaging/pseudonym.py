"""Patient ids for the manifest: keyed pseudonyms (HMAC-SHA256) and placeholders for missing ids.

Patient names are never read. With a key, ``PatientID`` becomes the first 16 hex digits of
HMAC-SHA256(key, PatientID): the same patient keeps the same id across runs with the same key, and
the id cannot be reversed or recomputed without the key. A file without a PatientID gets the
placeholder ``no-patient-id:<StudyInstanceUID>`` (each study then counts as its own patient; falls
back to the series, then the instance UID), hashed like any id when a key is given.
"""

from __future__ import annotations

import hashlib
import hmac

PSEUDONYM_HEX_DIGITS = 16
MISSING_PREFIX = "no-patient-id:"


def pseudonymize(patient_id: str, key: str) -> str:
    """First 16 hex digits of HMAC-SHA256(key, patient_id), both UTF-8 encoded."""
    digest = hmac.new(key.encode("utf-8"), patient_id.encode("utf-8"), hashlib.sha256).hexdigest()
    return digest[:PSEUDONYM_HEX_DIGITS]


def patient_key(patient_id: str | None, study_uid: str, series_uid: str, sop_uid: str, key: str | None) -> str:
    """The manifest ``patient_id``: the PatientID (or its placeholder), pseudonymized if ``key``."""
    pid = (patient_id or "").strip()
    if not pid:
        pid = MISSING_PREFIX + (study_uid or series_uid or sop_uid)
    return pseudonymize(pid, key) if key else pid
