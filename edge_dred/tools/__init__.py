"""Developer tools behind commands: benchmarks, ARM estimates, the demo clip."""
