"""cellstate inference service (FastAPI + onnxruntime; no torch)."""

__version__ = "0.1.0"
