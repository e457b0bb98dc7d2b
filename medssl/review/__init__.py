"""Review store (SQLAlchemy), audit trail, reviewer accounts."""
