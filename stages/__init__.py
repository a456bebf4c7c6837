"""Thin DVC stage scripts: `python -m stages.<name>` from the repo root."""
