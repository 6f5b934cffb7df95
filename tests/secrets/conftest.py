"""Secrets tests: the OpenBao fixtures (until `tests.fixtures.openbao` is in pytest_plugins)."""

from __future__ import annotations

from tests.fixtures.openbao import openbao, throwaway_openbao, vault_base_path

__all__ = ["openbao", "throwaway_openbao", "vault_base_path"]
