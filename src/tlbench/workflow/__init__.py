"""The Snakemake workflow's side: the job scripts' helpers (``jobs``) and the job server
that forks a process per job from one that imported Keras once (``jobserver``,
``job_client``). Imports every layer below it.
"""
