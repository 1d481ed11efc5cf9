"""Prolific: the API client, the platform, its settings and its money rules (see docs/prolific.md)."""
