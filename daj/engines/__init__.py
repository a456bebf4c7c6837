"""Text generation shared by the policies and the judge: hf (transformers), vllm, openai-compatible."""
