"""corral: a pre-fork HTTP server for Python web applications.

Only the public surface lives here; everything else is in the submodules.
"""

__version__ = "0.1.0"
SERVER_SOFTWARE = f"corral/{__version__}"
