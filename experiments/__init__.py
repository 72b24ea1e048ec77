"""Experiment configs (ml_collections): `get_config(arg)` per file, sweeps defined beside them."""
