"""Does the sandbox give the official verdicts? LiveCodeBench's pools and BigCodeBench's canonical
solutions, judged by daj's sandbox (results in results/; timings are benchmarks/' business)."""
