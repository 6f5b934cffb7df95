"""Phone calls: phone numbers, carrier webhooks and media streams, outbound calls.

A carrier (Twilio, Telnyx) is one module that knows its webhook signature, its call-control
REST API and its media-stream messages; `call.PhoneCall` runs any carrier's stream on the
transport-neutral voice conversation.
"""
