"""Every page: the results page and what its sections share (``results``), seed
studies' sections (``seeds``, ``seed_checks``, ``seed_findings``), other measured studies'
(``studies``, ``transferability``), the verdict's front section, learning curves and the
environment page.
"""
