"""Side-by-side benchmarks; results are appended to bench/RESULTS.md."""
