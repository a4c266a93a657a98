"""presence-svc: live presence, view statistics and a view ledger on Redis."""

__all__ = ["__version__"]

__version__ = "0.1.0"
