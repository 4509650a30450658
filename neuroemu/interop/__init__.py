"""Exchange of networks with other tools: :mod:`neuroemu.interop.nir` imports and exports the
Neuromorphic Intermediate Representation (NIR; the optional ``nir`` package,
``pip install 'neuroemu[nir]'``, imported only when used)."""

from .nir import NIRNetwork, Recording, from_nir, to_nir

__all__ = ["NIRNetwork", "Recording", "from_nir", "to_nir"]
