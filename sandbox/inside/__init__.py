"""The part of the sandbox that runs inside the isolation: stdlib only, mounted alone (see main.py)."""
