"""Data: token shards, the grain data source, step-indexed mixing and a synthetic source."""
