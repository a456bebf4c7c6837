"""daj: a data-reweighted LLM judge for Best-of-N code generation."""

__version__ = "0.1.0"
