"""Which differences are real: the paired bootstrap (``bootstrap``), the cells and
the verdict per dataset (``assess``), two cells side by side (``pairs``) and the
strategies across datasets (``across``).
"""
