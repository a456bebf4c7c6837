"""Text generation engines: hf (transformers), vllm, openai-compatible; plus file and mutants pools."""
