"""Prefect tasks of the smollm2 family's own stages, one module per stage (as flows/smollm2/)."""
