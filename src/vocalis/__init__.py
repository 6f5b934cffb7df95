"""Vocalis: self-hosted voice and chat AI agents."""

__version__ = "0.1.0"
