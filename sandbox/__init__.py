"""Untrusted-code execution: the in-sandbox harness and its isolation backends."""
