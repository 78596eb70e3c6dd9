"""The public import path of the provisioner, kept from before the layers had folders.

``from jupyter_mlcontainer.provisioner import MLContainerProvisioner`` keeps working; the code
lives in :mod:`jupyter_mlcontainer.kernel.provisioner`.
"""

from .kernel.provisioner import MLContainerProvisioner

__all__ = ["MLContainerProvisioner"]
