"""Schemathesis hooks for tests/api/schemathesis_run.py (loaded via SCHEMATHESIS_HOOKS).

The run holds one owner key. Revoking it would turn the rest of the run into 401s, so a
generated `DELETE /v1/api-keys/{key_id}` aimed at that key is re-aimed at an unknown id
(still a real request, answered 404); every other case is sent as generated.
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis


@schemathesis.hook
def before_call(context: Any, case: Any, **kwargs: Any) -> None:
    owner = os.environ.get("ST_OWNER_KEY_ID")
    if (
        owner
        and case.method.upper() == "DELETE"
        and case.path == "/v1/api-keys/{key_id}"
        and (case.path_parameters or {}).get("key_id") == owner
    ):
        case.path_parameters = {**case.path_parameters, "key_id": "key_not_the_runs_owner"}
