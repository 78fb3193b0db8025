"""What every model family's training reuses: seeding, the epoch loop, the checkpoint shape, the CLI built from
config dataclasses, curve figures, and ONNX export / parity / publishing."""
