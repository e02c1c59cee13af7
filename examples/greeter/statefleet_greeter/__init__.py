"""An example of users' own task code for statefleet (see its README.md)."""

from statefleet_greeter.handlers import Ledger, greet

__all__ = ["Ledger", "greet"]
