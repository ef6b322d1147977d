"""The version of Keystile, in a module of its own: the clients, which the package loads on first use, read it
without importing the package back."""

__version__ = "0.1.0"
