"""Operator endpoints: the dead-letter store and feature-flag overrides."""
