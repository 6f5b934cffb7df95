"""Short-lived, single-use tokens that let a carrier open one call's media stream.

The voice webhook (or the outbound call request) signs what the stream needs to know —
organisation, number, agent, the two parties, the carrier's call id, an existing
conversation — into a token sealed with the secret box (Fernet: encrypted and
authenticated, so the caller's number is not readable in transit) with an expiry. The
carrier hands it back in the stream's `start` message (Twilio `customParameters`, Telnyx
`client_state`); it opens one stream, once: its digest is claimed in Redis on first use.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass

from vocalis.core.backends import Backends
from vocalis.core.redis_keys import declare
from vocalis.telephony.errors import StreamTokenInvalid

STREAM_TOKEN_USED = declare(
    "telephony_stream_token_used",
    "vocalis:tel:token:{digest}",
    "`1` once the media-stream token with this SHA-256 opened its stream (tokens are single-use).",
    "The token's lifetime (`VOCALIS_TELEPHONY_STREAM_TOKEN_TTL_S`).",
)


@dataclass(frozen=True)
class StreamGrant:
    """What a media stream is allowed to become."""

    provider: str
    org_id: str
    phone_number_id: str
    agent_id: str
    direction: str  # "inbound" | "outbound"
    caller: str  # the far end: who called us, or whom we called
    our_number: str
    slot_id: str  # the organisation's concurrent-call slot this call holds
    conversation_id: str | None = None  # outbound calls create theirs before dialling
    expires_at: float = 0.0


async def issue(backends: Backends, grant: StreamGrant) -> str:
    """A sealed token for `grant`, valid for the configured lifetime."""
    ttl = backends.settings.telephony_stream_token_ttl_s
    sealed = {**asdict(grant), "expires_at": time.time() + ttl}
    box = await backends.secret_box.get()
    return box.encrypt(json.dumps(sealed))


async def redeem(backends: Backends, token: str, *, provider: str) -> StreamGrant:
    """The grant of an unexpired, unused token for this provider (StreamTokenInvalid else)."""
    box = await backends.secret_box.get()
    try:
        grant = StreamGrant(**json.loads(box.decrypt(token)))
    except Exception:
        raise StreamTokenInvalid("The stream token is not one we issued.") from None
    remaining = grant.expires_at - time.time()
    if remaining <= 0 or grant.provider != provider:
        raise StreamTokenInvalid("The stream token has expired or is for another carrier.")
    digest = hashlib.sha256(token.encode()).hexdigest()
    key = STREAM_TOKEN_USED.format(digest=digest)
    if not await backends.redis.set(key, "1", nx=True, ex=max(1, int(remaining) + 1)):
        raise StreamTokenInvalid("The stream token was already used.")
    return grant
