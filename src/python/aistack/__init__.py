"""aistack: medical AI models served as dependable services."""

__version__ = "0.1.0"
