"""Test doubles for what cannot run here: an OpenAI-compatible server on a local model (vLLM stand-in)."""
