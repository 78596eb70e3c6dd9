"""Docker Swarm: kernels as services of one task, placed by the swarm's scheduler.

Pure translations for now (``spec.py``: a container plan to a service spec; ``tasks.py``: a
task record to the seam's ``ContainerState``); the backend itself is the next step.
"""
