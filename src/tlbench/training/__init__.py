"""Training one run: the run spec and the engine that trains and evaluates it.

The run spec (defaults, checks, names without Keras), the engine, the trainer (one phase
at a time), callbacks, resume from checkpoints, optimizers, the jit policy, the frozen
backbone's feature cache, evaluation and metrics. Imports strategies, models, datasets
and core.
"""
