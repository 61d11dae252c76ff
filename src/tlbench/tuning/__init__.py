"""Hyperparameter search (keras-tuner) of a strategy on validation data.

The ``tuning:`` section (search space, tuner), the search, its hypermodels and trials.
Imports training and the layers below it.
"""
