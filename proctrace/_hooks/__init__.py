"""The hooks: patches of multiprocessing and its pools, installed and undone in one registry."""
