"""Review store (SQLAlchemy), audit trail, reviewer accounts."""

from medssl.review.db import default_db_url, make_engine
from medssl.review.errors import ClaimError, ReviewError, UserError
from medssl.review.events import (
    ACTIONS, DECISIONS, STATUSES, CaseState, Event, active_claims, add_note, case_events, case_state,
    case_states, claim_case, derive_state, record_decision, release_case, undo_last,
)
from medssl.review.export import decisions_to_labels, export_labels
from medssl.review.queue import (
    SCORE_COLUMNS, QueuePage, count_cases, get_case, import_scores, list_queue, queue_domains, read_scores,
)
from medssl.review.users import ROLES, Account, add_user, authenticate, get_user, list_users

__all__ = [
    "ACTIONS", "DECISIONS", "ROLES", "SCORE_COLUMNS", "STATUSES", "Account", "CaseState", "ClaimError",
    "Event", "QueuePage", "ReviewError", "UserError", "active_claims", "add_note", "add_user",
    "authenticate", "case_events", "case_state", "case_states", "claim_case", "count_cases",
    "decisions_to_labels", "default_db_url", "derive_state", "export_labels", "get_case", "get_user",
    "import_scores", "list_queue", "list_users", "make_engine", "queue_domains", "read_scores",
    "record_decision", "release_case", "undo_last",
]
