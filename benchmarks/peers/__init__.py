"""Servers users would pick instead of cellstate, serving the same ONNX files (benchmarks/compare.py runs them)."""
