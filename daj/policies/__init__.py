"""Where candidates come from: sampling through an engine, pre-sampled pool files, AST mutants."""
