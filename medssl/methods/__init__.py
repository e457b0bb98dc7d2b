"""SSL methods, one file each, behind one registry."""

from medssl.methods.base import METHODS, SSLMethod, create_method, list_methods, register_method

__all__ = ["METHODS", "SSLMethod", "create_method", "list_methods", "register_method"]
