"""Imports every module that defines tables, so `Base.metadata` is complete (Alembic, docs)."""

from __future__ import annotations

import importlib

from vocalis.core.db import Base

MODEL_MODULES = (
    "vocalis.orgs.models",
    "vocalis.adapters.sql_document_store",
    "vocalis.agents.models",
    "vocalis.agents.model_providers",
    "vocalis.agents.mcp_servers",
    "vocalis.events.models",
    "vocalis.webhooks.models",
    "vocalis.workers.models",
    "vocalis.flags.models",
    "vocalis.knowledge.models",
    "vocalis.telephony.models",
)


def load_all() -> type[Base]:
    """Import every model module; returns the declarative base."""
    for module in MODEL_MODULES:
        importlib.import_module(module)
    return Base
