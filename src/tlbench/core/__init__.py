"""The lowest layer: what every other layer uses and nothing of the study's own.

Registries (one per axis), errors, atomic writes, file digests, lazy imports, derived
seeds, provenance (versions, hardware, git commit, how a process started) and the run
folder's format. Imports no other layer of tlbench.
"""
