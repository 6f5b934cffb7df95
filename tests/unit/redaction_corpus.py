"""Example texts for the redactor: what must be redacted, and what must come out unchanged.

Card and IBAN numbers are the networks' and banks' published test numbers; phone numbers
are from ranges reserved for fiction (Ofcom 020 7946 0xxx, NANP 555).
"""

from __future__ import annotations

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkphbmUifQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
VOCALIS_KEY = "vk_AbCdEfGhIjKl" + "3q5x9ZkLmNoPqRsTuVwXyZ012345-_abcdEFGH"
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
    "-----END RSA PRIVATE KEY-----"
)

# (id, text, expected redacted text)
POSITIVE: list[tuple[str, str, str]] = [
    # --- email
    ("email-in-prose", "Contact jane.doe@example.com for details", "Contact [EMAIL] for details"),
    ("email-plus-subdomain", "From: JOHN_SMITH+billing@Mail.Example.co.uk", "From: [EMAIL]"),
    ("email-two-in-list", "cc: a@b.io, c.d@e.org", "cc: [EMAIL], [EMAIL]"),
    ("email-in-angle-brackets", "Jane <jane@example.com>", "Jane <[EMAIL]>"),
    ("email-unicode-local-part", "josé.garcía@correo.es wrote", "[EMAIL] wrote"),
    # --- phone
    ("phone-uk-international", "Call +44 20 7946 0958 today", "Call [PHONE] today"),
    ("phone-us-parenthesised", "(415) 555-2671", "[PHONE]"),
    ("phone-us-dashed", "my number is 415-555-2671.", "my number is [PHONE]."),
    ("phone-us-international-spaced", "+1 415 555 2671", "[PHONE]"),
    ("phone-us-international-parenthesised", "+1 (415) 555-2671", "[PHONE]"),
    ("phone-e164-compact", "to=+14155552671&from=bot", "to=[PHONE]&from=bot"),
    ("phone-us-dotted", "fax 415.555.2671", "fax [PHONE]"),
    ("phone-us-toll-free", "1-800-555-0199", "[PHONE]"),
    ("phone-de-trunk-in-parentheses", "+49 (0)30 1234567", "[PHONE]"),
    ("phone-fr-international", "+33 1 23 45 67 89", "[PHONE]"),
    ("phone-uk-national", "ring 020 7946 0958 now", "ring [PHONE] now"),
    ("phone-uk-mobile", "phone: 07700 900123.", "phone: [PHONE]."),
    # --- payment cards
    ("card-visa-spaced", "4111 1111 1111 1111", "[CARD]"),
    ("card-visa-dashed", "card 4111-1111-1111-1111 exp 12/27", "card [CARD] exp 12/27"),
    ("card-mastercard-compact", "pan=5555555555554444;", "pan=[CARD];"),
    ("card-amex-4-6-5", "Amex 3782 822463 10005", "Amex [CARD]"),
    ("card-visa-13-digits", "old visa 4222222222222", "old visa [CARD]"),
    ("card-discover", "6011 1111 1111 1117 declined", "[CARD] declined"),
    ("card-followed-by-number", "4111 1111 1111 1111 2 items", "[CARD] 2 items"),
    # --- national ids and bank accounts
    ("ssn-labelled", "SSN 123-45-6789", "SSN [SSN]"),
    ("ssn-after-colon", "ssn:078-05-1120", "ssn:[SSN]"),
    ("iban-gb-grouped", "IBAN GB82 WEST 1234 5698 7654 32.", "IBAN [IBAN]."),
    ("iban-de-compact", "DE89370400440532013000", "[IBAN]"),
    ("iban-fr-with-letters", "FR14 2004 1010 0505 0001 3M02 606", "[IBAN]"),
    # --- API keys and tokens
    ("vocalis-api-key", f"using key {VOCALIS_KEY}", "using key [API_KEY]"),
    (
        "openai-key-env-style",
        "OPENAI_API_KEY=sk-proj-abcdefghijklmnopqrstuvwxyz012345",
        "OPENAI_API_KEY=[API_KEY]",
    ),
    ("openai-key-bare", "key sk-abcdefghijklmnopqrstuvwxyz0123 ok", "key [API_KEY] ok"),
    ("webhook-secret", "secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "secret [API_KEY]"),
    ("aws-access-key-id", "aws AKIAIOSFODNN7EXAMPLE", "aws [API_KEY]"),
    ("stripe-live-key", "sk_live_51HxYzAbCdEfGhIjKlMn", "[API_KEY]"),
    ("github-token", "ghp_abcdefghijklmnopqrstuvwxyz0123456789", "[API_KEY]"),
    ("slack-token", "xoxb-123456789012-abcdefghijkl", "[API_KEY]"),
    ("api-key-assignment", "api_key=abcdef123456 region=eu", "api_key=[API_KEY] region=eu"),
    ("api-key-header", "x-api-key: abcdef123456", "x-api-key: [API_KEY]"),
    ("bearer-token", "Authorization: Bearer abc123def456ghi789", "Authorization: Bearer [TOKEN]"),
    ("bearer-jwt", f"Bearer {JWT}", "Bearer [JWT]"),
    ("jwt-in-query", f"GET /cb?id_token={JWT}&state=1", "GET /cb?id_token=[JWT]&state=1"),
    ("basic-auth", "Authorization: Basic dXNlcjpodW50ZXIy", "Authorization: Basic [SECRET]"),
    ("cookie-header", "Cookie: session=abc123; theme=dark", "Cookie: [SECRET]"),
    ("pem-private-key", f"key:\n{PEM}\ndone", "key:\n[SECRET]\ndone"),
    # --- key=value secrets: the key stays, the value goes
    ("password-query-pair", "password=hunter2&user=bob", "password=[SECRET]&user=bob"),
    ("secret-yaml-pair", "secret: s3cr3t", "secret: [SECRET]"),
    ("token-pair", "token=abc123", "token=[TOKEN]"),
    ("password-uppercase-key", "PASSWORD: Hunter2", "PASSWORD: [SECRET]"),
    (
        "password-json",
        '{"password": "hunter2", "user": "bob"}',
        '{"password": "[SECRET]", "user": "bob"}',
    ),
    ("password-python-repr", "{'db_password': 'pa ss'}", "{'db_password': '[SECRET]'}"),
    (
        "secret-escaped-json",
        'body={\\"client_secret\\": \\"abc\\"}',
        'body={\\"client_secret\\": \\"[SECRET]\\"}',
    ),
    (
        "url-password",
        "postgresql+asyncpg://vocalis:s3cret@db:5432/vocalis",
        "postgresql+asyncpg://vocalis:[SECRET]@db:5432/vocalis",
    ),
    ("url-password-no-user", "redis://:hunter2@cache:6379/0", "redis://:[SECRET]@cache:6379/0"),
    # --- several kinds in one line
    (
        "mixed-line",
        "User jane@example.com (+1 415 555 2671) paid with 4111 1111 1111 1111",
        "User [EMAIL] ([PHONE]) paid with [CARD]",
    ),
]

# (id, text) — each must come out exactly as it went in.
NEGATIVE: list[tuple[str, str]] = [
    ("iso-date", "2024-01-15"),
    ("date-and-time", "Meeting on 2024-01-15 at 10:30"),
    ("iso-timestamp-with-offset", "2024-01-15T10:30:00.123456+00:00"),
    ("slashed-date", "due 12/05/2024"),
    ("years", "in 1999 and 2024"),
    ("list-of-years", "2021 2022 2023 2024"),
    ("prices", "Total: $1,234.56 (EUR 1.234,56)"),
    ("invoice-number", "Invoice INV-2024-000123"),
    ("order-number", "order #12345 shipped"),
    ("version-strings", "version 1.2.3 and v10.0.12"),
    ("non-luhn-card-spaced", "4111 1111 1111 1112"),
    ("non-luhn-card-compact", "4111111111111112"),
    ("epoch-milliseconds", "epoch 1700000000000 ms"),
    ("zip-plus-four", "San Francisco, CA 94105-1234"),
    ("uuid", "123e4567-e89b-12d3-a456-426614174000"),
    ("hex-id-with-a-luhn-valid-digit-run", "request 9f4111111111111111ab00c1e2"),
    ("short-ids", "req_01HZX3K9 conv_8f3a2b agent 42"),
    ("plain-prose", "The quick brown fox jumps over the lazy dog."),
    ("url-without-credentials", "https://docs.example.com/guide?page=2#setup"),
    ("localhost-url", "Listening on http://127.0.0.1:8000"),
    ("ip-address", "client 192.168.100.200"),
    ("token-counts", "max_tokens=512 prompt_tokens=120 tokens: 42"),
    ("bearer-in-prose", "Bearer authentication is required"),
    ("basic-in-prose", "Basic usage of the API"),
    ("retry-counter", "retry in 30s, attempt 3/5"),
    ("timezone-offset", "offset +05:30"),
    ("ssn-invalid-area-666", "666-45-6789"),
    ("ssn-invalid-area-9xx", "900-12-3456"),
    ("ssn-invalid-area-000", "000-12-3456"),
    ("iban-bad-checksum", "GB82 WEST 1234 5698 7654 33"),
    ("sha256-hex", "sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"),
    ("ports", "port 5432 and 6379"),
    ("key-word-without-value", "the key is in the cupboard; the secret is out"),
    ("vocalis-key-lookup-prefix", "key vk_AbCdEfGhIjKl revoked"),
    ("at-mention", "thanks @jane and @bob"),
]
