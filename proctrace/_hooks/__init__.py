"""The hooks: patches of multiprocessing and its pools, installed and undone in one registry.

The entry point (``install``) is loaded with the package: it registers itself with the
registry, and a child that only unpickled its target (a ``ProcessTarget``, under
``instrument()``) installs every hook through it for its own children and pool tasks.
"""

from . import install as _install  # noqa: F401
