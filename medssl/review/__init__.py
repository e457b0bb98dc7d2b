"""Review store (SQLAlchemy), audit trail, reviewer accounts.

Names are re-exported lazily (see medssl.lazy)."""

from medssl.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "default_db_url": "medssl.review.db",
        "make_engine": "medssl.review.db",
        "ClaimError": "medssl.review.errors",
        "ReviewError": "medssl.review.errors",
        "UserError": "medssl.review.errors",
        "ACTIONS": "medssl.review.events",
        "DECISIONS": "medssl.review.events",
        "STATUSES": "medssl.review.events",
        "CaseState": "medssl.review.events",
        "Event": "medssl.review.events",
        "active_claims": "medssl.review.events",
        "add_note": "medssl.review.events",
        "case_events": "medssl.review.events",
        "case_state": "medssl.review.events",
        "case_states": "medssl.review.events",
        "claim_case": "medssl.review.events",
        "derive_state": "medssl.review.events",
        "record_decision": "medssl.review.events",
        "release_case": "medssl.review.events",
        "undo_last": "medssl.review.events",
        "decisions_to_labels": "medssl.review.export",
        "export_labels": "medssl.review.export",
        "SCORE_COLUMNS": "medssl.review.queue",
        "QueuePage": "medssl.review.queue",
        "count_cases": "medssl.review.queue",
        "get_case": "medssl.review.queue",
        "import_scores": "medssl.review.queue",
        "list_queue": "medssl.review.queue",
        "queue_domains": "medssl.review.queue",
        "read_scores": "medssl.review.queue",
        "ROLES": "medssl.review.users",
        "Account": "medssl.review.users",
        "add_user": "medssl.review.users",
        "authenticate": "medssl.review.users",
        "get_user": "medssl.review.users",
        "ThrottledError": "medssl.review.throttle",
        "list_users": "medssl.review.users",
    },
)
