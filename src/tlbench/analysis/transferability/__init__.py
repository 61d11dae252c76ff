"""Transferability: scores from frozen features (``scores``), a feature cache scored
(``cache``), the scores against training (``tau``) and prescreening (``prescreen``).
"""
