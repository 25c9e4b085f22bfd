"""Flows of the smollm2 family's own stages (real/dvc.yaml); the later stages are the toy's."""
