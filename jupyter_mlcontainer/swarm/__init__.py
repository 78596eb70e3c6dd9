"""Docker Swarm: kernels as services of one task, placed by the swarm's scheduler.

``spec.py``: a container plan to a service spec; ``tasks.py``: a task record to the seam's
``ContainerState``; ``services.py``: a kernel's service on the manager (blocking SDK calls);
``backend.py``: :class:`~.backend.SwarmBackend`, the seam's verbs (docs/backends.md).
"""
