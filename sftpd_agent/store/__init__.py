"""The journal: SQLite, the agent's only memory across a crash; the only code that speaks SQL."""
