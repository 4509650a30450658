"""Bring your own network: the Neuromorphic Intermediate Representation (NIR).

:func:`from_nir` reads a NIR graph (a :class:`nir.NIRGraph` or a ``.nir`` file) as a
:class:`NIRNetwork` whose weight nodes are chip layers and whose neurons run as discretised neurons
(:mod:`neuroemu.interop.nir_import`: execution order, discretisation, metadata, analog neurons);
:func:`to_nir` writes neuroemu's spiking networks as NIR graphs with the weights the chip holds
(:mod:`neuroemu.interop.nir_export`). ``nir`` is an optional dependency (``pip install
'neuroemu[nir]'``), imported only when a function needs it.
"""

from .nir_export import to_nir
from .nir_import import NIRNetwork, Recording, from_nir, im2col, require_nir

__all__ = ["NIRNetwork", "Recording", "from_nir", "to_nir", "im2col", "require_nir"]
