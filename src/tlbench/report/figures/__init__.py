"""Every figure of the study (matplotlib, PNG, written atomically): shared helpers
(``base``), one run's (``runs``), a study's per dataset (``study``), the verdict's,
transferability's, tuning's and learning curves'.
"""
