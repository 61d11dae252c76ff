"""The report: renders what analysis computed.

Tables rendered (``render``), every matplotlib figure (``figures/``), every page
(``pages/``: the results page and its sections, the verdict's front section, learning
curves, the environment page) and the seed reports' reference data (``seed_reference``).
Imports study and the layers below it.
"""
