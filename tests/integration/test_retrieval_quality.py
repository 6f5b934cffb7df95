"""Retrieval quality of the offline stack: real embedder, real chunker, LanceDB.

The test builds its own corpus: 50 short passages in five Markdown documents (one
`##` section each) and 50 questions that paraphrase them. Each document goes through
sniff → extract → chunk → embed → index; each question is embedded and sent as a hybrid
query. Recall@5 (the question's section among the top five) must reach 0.9. A second
organisation indexes look-alike documents with the same text, and none of them may
appear in the first organisation's results.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures.embeddings import onnx_embedder  # noqa: F401  (fixture)
from vocalis.adapters.lancedb_vector_store import LanceDBVectorStore
from vocalis.adapters.onnx_embeddings import OnnxEmbedder
from vocalis.knowledge.chunking import chunk_sections
from vocalis.knowledge.extract import extract
from vocalis.knowledge.sniff import DocumentType, sniff
from vocalis.ports.vector_store import ChunkMetadata, ChunkRecord, QueryRequest

ORG = "org_quality"
DECOY_ORG = "org_decoy"
KB = "kb_handbook"


@dataclass(frozen=True)
class Passage:
    heading: str
    text: str
    question: str  # a paraphrase: it should not need the passage's exact words


CORPUS: dict[str, list[Passage]] = {
    "Billing and accounts": [
        Passage("Refunds", "Customers can request a full refund within 30 days of purchase. Refunds go back to the original payment method and usually appear within five to seven business days. After 30 days only account credit can be offered.", "I bought something three weeks ago and changed my mind; can I get my money back, and how long until it shows up?"),
        Passage("Invoices", "Invoices are generated on the first day of each month and emailed to the billing contact. Past invoices can be downloaded as PDF files from the Billing page of the dashboard for up to seven years.", "Where can I find old bills for my accounting records?"),
        Passage("Payment methods", "We accept Visa, Mastercard, American Express and SEPA direct debit. Bank transfers are available for annual plans above 5,000 euros. Cryptocurrency and PayPal are not accepted.", "Can I pay with bitcoin or PayPal?"),
        Passage("Failed payments", "If a card payment fails, we retry automatically after three days and again after seven days. The account is suspended if the balance is still unpaid fourteen days after the first attempt.", "What happens if my credit card gets declined?"),
        Passage("Plan changes", "Upgrading to a higher plan takes effect immediately and you are charged a prorated amount for the rest of the billing cycle. Downgrades take effect at the start of the next cycle.", "If I move to a bigger subscription in the middle of the month, do I pay the full price?"),
        Passage("VAT", "Prices shown exclude VAT. Business customers in the EU who provide a valid VAT number are billed under the reverse-charge mechanism and are not charged VAT.", "Do European companies have to pay sales tax on top of the listed price?"),
        Passage("Education discount", "Students and teachers get 50 percent off the Pro plan for one year. Verification requires an email address from an accredited school or university.", "Is there a cheaper price for people who study or teach?"),
        Passage("Account deletion", "Deleting your account permanently removes all projects, files and backups after a 14-day grace period. During the grace period an administrator can restore the account from the recovery link sent by email.", "I closed my account by mistake yesterday; is it possible to undo that?"),
        Passage("Team seats", "Each additional team member costs 8 euros per month on the Team plan. Seats can be added at any time and unused seats are credited when removed.", "How much extra is it to invite another colleague to our workspace?"),
        Passage("Free trial", "The free trial lasts 14 days and includes all Pro features. No credit card is needed to start, and the account switches to the Free plan automatically when the trial ends.", "Do I need to enter payment details to test the premium features?"),
    ],
    "Devices and shipping": [
        Passage("Shipping times", "Orders placed before 2 pm on a business day ship the same day from our warehouse in Rotterdam. Delivery within the EU takes two to four business days.", "If I order in the morning, when will the package leave?"),
        Passage("International shipping", "We ship to the United Kingdom, Switzerland and Norway with customs duties prepaid. Shipping outside Europe is not available at the moment.", "Can you deliver to Australia?"),
        Passage("Tracking", "A tracking number is sent by email as soon as the parcel leaves the warehouse. Tracking updates can take up to 24 hours to appear on the carrier's website.", "My order went out but the courier site shows nothing about it yet; is something wrong?"),
        Passage("Hardware returns", "Hardware can be returned within 30 days in its original packaging. Print the prepaid return label from your order page; devices that are damaged or missing accessories receive a partial refund.", "How do I send back a gadget I don't want?"),
        Passage("Warranty", "All devices include a two-year warranty covering manufacturing defects. Water damage, drops and battery wear below 80 percent capacity are not covered.", "My unit fell into the swimming pool; will you fix it for free?"),
        Passage("Battery life", "The handheld scanner's battery lasts about 12 hours of continuous scanning and recharges fully in 90 minutes over USB-C.", "How long can I use the scanner before it needs charging?"),
        Passage("Firmware updates", "Devices check for firmware updates every night at 3 am local time while connected to Wi-Fi and charging. Updates can also be installed manually from the device settings menu.", "When does the handheld install new software versions?"),
        Passage("Factory reset", "To factory reset the scanner, hold the power and trigger buttons together for ten seconds until the LED blinks red. All stored scans and Wi-Fi settings are erased.", "How can I wipe the handheld back to its original state?"),
        Passage("Volume orders", "Orders of 50 devices or more qualify for volume pricing and a dedicated account manager. Contact the sales team for a quote; volume orders ship within ten business days.", "We want to buy a large number of units for our stores; is there a discount?"),
        Passage("Spare parts", "Replacement chargers, straps and protective cases can be ordered from the accessories shop. Spare batteries are only sold to certified repair partners.", "Can I buy a replacement battery for my device myself?"),
    ],
    "Security and privacy": [
        Passage("Two-factor authentication", "Two-factor authentication can be enabled under Security settings using an authenticator app or a hardware security key. SMS codes are not supported because of SIM-swapping risks.", "Can I get my login codes sent by text message?"),
        Passage("Password rules", "Passwords must be at least 12 characters long. New passwords are checked against lists of known breached passwords and any match is rejected.", "What are the requirements when choosing a login secret?"),
        Passage("Data location", "Customer data is stored in data centres in Frankfurt and Amsterdam. Data never leaves the European Union, including backups.", "In which country are my files physically kept?"),
        Passage("Encryption", "All data is encrypted at rest with AES-256 and in transit with TLS 1.2 or higher. Encryption keys are rotated every 90 days.", "Is my information scrambled when it sits on your servers?"),
        Passage("Personal data requests", "To request a copy of your personal data or its deletion, email privacy@example.com. We answer data subject requests within 30 days as required by the GDPR.", "How do I get an export of everything you know about me?"),
        Passage("Session timeout", "For security, web sessions expire after 12 hours of inactivity. Administrators can shorten the timeout to as little as 15 minutes for their organisation.", "Why am I signed out when I leave the browser open overnight?"),
        Passage("Audit log", "The audit log records sign-ins, permission changes and data exports for every user. Logs are kept for one year on the Enterprise plan and 90 days on other plans.", "How far back can I see who changed access rights?"),
        Passage("Bug bounty", "Security researchers can report vulnerabilities through our bug bounty programme. Valid reports are rewarded with between 100 and 10,000 euros depending on severity.", "I found a security hole in your product; is there a reward for reporting it?"),
        Passage("Single sign-on", "Single sign-on with SAML 2.0 and OpenID Connect is available on the Enterprise plan. Supported identity providers include Okta, Azure AD and Google Workspace.", "Can our employees log in with their corporate Okta accounts?"),
        Passage("IP allowlist", "Enterprise administrators can restrict dashboard access to a list of allowed IP ranges. Requests from other addresses receive an access denied error.", "Is it possible to block logins from outside our office network?"),
    ],
    "Developer guide": [
        Passage("Rate limits", "The API allows 600 requests per minute per key. When the limit is exceeded the API responds with status 429 and a Retry-After header indicating how many seconds to wait.", "What does it mean when my integration gets error 429?"),
        Passage("API keys", "API keys are created in the Developer section of the dashboard. A key is shown only once at creation, so store it in a secret manager immediately.", "I lost my token right after generating it; can I view it again?"),
        Passage("Webhook signatures", "Webhooks notify your server when events such as order.created happen. Each delivery is signed with an HMAC-SHA256 signature in the webhook-signature header.", "How can my backend verify that a callback really came from you?"),
        Passage("Webhook retries", "Failed webhook deliveries are retried with exponential backoff for up to 24 hours. After that the event is moved to the dead-letter list, where it can be replayed manually.", "What happens to events if my endpoint was down when they were sent?"),
        Passage("Pagination", "List endpoints return at most 100 items per page. Use the next_cursor value from a response as the cursor parameter to fetch the following page.", "How do I get the second batch of results from a list call?"),
        Passage("Client libraries", "Official client libraries are available for Python, JavaScript and Go. Community libraries exist for Ruby and PHP but are not maintained by us.", "Is there an official package for Ruby developers?"),
        Passage("Sandbox", "The sandbox environment mirrors production but uses test payment cards and never sends real emails. Sandbox data is wiped every Sunday night.", "Where can I experiment without charging real money or emailing real customers?"),
        Passage("Versioning", "The API is versioned by date in the URL path. Old versions remain available for at least 18 months after a new version is released.", "How long will older endpoints keep working after you publish a new release?"),
        Passage("Idempotency", "POST requests accept an Idempotency-Key header. Repeating a request with the same key within 24 hours returns the original response instead of creating a duplicate.", "How do I safely retry a create call without ending up with two records?"),
        Passage("Status page", "Service status and incident history are published at status.example.com. You can subscribe there to receive email or SMS alerts about outages.", "How can I be notified when your service goes down?"),
    ],
    "Employee handbook": [
        Passage("Remote work", "Employees may work remotely up to three days per week. Fully remote arrangements require approval from the department head and HR.", "How many days a week am I allowed to work from home?"),
        Passage("Annual leave", "Full-time staff receive 28 days of paid annual leave plus public holidays. Up to five unused days can be carried over into the first quarter of the next year.", "Can I keep vacation days I didn't use this year?"),
        Passage("Sick leave", "Employees who are ill must notify their manager before 10 am. A doctor's note is required for absences longer than three consecutive days.", "When do I need a medical certificate if I'm unwell?"),
        Passage("Expenses", "Business expenses must be submitted within 60 days with a receipt through the expenses app. Meals are reimbursed up to 40 euros per day while travelling.", "What's the daily food allowance on work trips?"),
        Passage("Parental leave", "Parents receive 16 weeks of fully paid parental leave, which can be taken at any time during the child's first year.", "How much paid time off do new mothers and fathers get?"),
        Passage("Learning budget", "Every employee has an annual learning budget of 1,500 euros for courses, books and conferences. Unused budget does not roll over.", "Is there money available for professional development?"),
        Passage("Office hours", "The office is open from 7 am to 10 pm on weekdays. Badge access on weekends must be requested from facilities at least one day in advance.", "Can I get into the building on a Saturday?"),
        Passage("Equipment", "New employees receive a laptop of their choice, a monitor and noise-cancelling headphones. Equipment must be returned within two weeks of leaving the company.", "What hardware do I get when I join?"),
        Passage("Referral bonus", "Employees who refer a candidate receive a 2,000 euro bonus once the new hire completes their probation period.", "Do I get paid if a friend I recommended is hired?"),
        Passage("Performance reviews", "Performance reviews take place twice a year, in March and September. Salary adjustments are decided in the March review.", "When are pay raises decided?"),
    ],
}  # fmt: skip


def document_bytes(title: str, passages: list[Passage]) -> bytes:
    """One Markdown document: a title and one `##` section per passage."""
    body = "\n\n".join(f"## {p.heading}\n\n{p.text}" for p in passages)
    return f"# {title}\n\n{body}\n".encode()


async def ingest(
    store: LanceDBVectorStore, embedder: OnnxEmbedder, org_id: str, prefix: str
) -> None:
    """Every corpus document through sniff, extract, chunk, embed and index."""
    for number, (title, passages) in enumerate(CORPUS.items()):
        data = document_bytes(title, passages)
        detected = sniff(data, f"{title}.md")
        assert detected.type is DocumentType.MARKDOWN
        chunks = chunk_sections(extract(data, detected.type).sections, embedder.count_tokens)
        vectors = await embedder.embed([c.embedding_text() for c in chunks])
        document_id = f"{prefix}_doc_{number}"
        records = [
            ChunkRecord(
                id=f"{document_id}_v1_{c.index}",
                kb_id=KB,
                document_id=document_id,
                document_name=f"{title}.md",
                version=1,
                text=c.text,
                vector=vector,
                metadata=ChunkMetadata(chunk_index=c.index, page=c.page, section=c.heading),
            )
            for c, vector in zip(chunks, vectors, strict=True)
        ]
        await store.upsert(org_id, records)


@pytest.fixture(scope="module")
async def indexed(
    tmp_path_factory: pytest.TempPathFactory,
    onnx_embedder: OnnxEmbedder,  # noqa: F811
) -> AsyncIterator[LanceDBVectorStore]:
    """The corpus indexed for ORG, and again (as decoys) for DECOY_ORG."""
    path: Path = tmp_path_factory.mktemp("retrieval") / "vectors"
    store = LanceDBVectorStore(path, dimensions=onnx_embedder.dimensions)
    await store.ensure_collection()
    await ingest(store, onnx_embedder, ORG, "real")
    await ingest(store, onnx_embedder, DECOY_ORG, "decoy")
    yield store
    await store.close()


def test_the_corpus_is_big_enough() -> None:
    passages = [p for ps in CORPUS.values() for p in ps]
    assert len(passages) >= 50
    assert len({p.text for p in passages}) == len(passages)
    assert len({p.question for p in passages}) >= 50


async def test_every_passage_is_indexed_as_its_own_section(
    indexed: LanceDBVectorStore,
) -> None:
    assert await indexed.count(ORG, KB) == sum(len(ps) for ps in CORPUS.values())


async def test_recall_at_5_is_at_least_0_9(
    indexed: LanceDBVectorStore,
    onnx_embedder: OnnxEmbedder,  # noqa: F811
) -> None:
    cases = [(title, p) for title, ps in CORPUS.items() for p in ps]
    question_vectors = await onnx_embedder.embed([p.question for _, p in cases])
    misses = []
    for (title, passage), vector in zip(cases, question_vectors, strict=True):
        results = await indexed.query(
            ORG, QueryRequest(vector=vector, text=passage.question, kb_ids=[KB], top_k=5)
        )
        found = [(r.document_name, r.metadata.section) for r in results]
        if (f"{title}.md", passage.heading) not in found:
            misses.append(f"{passage.question!r} -> {found}")
    recall = 1 - len(misses) / len(cases)
    assert recall >= 0.9, f"recall@5 = {recall:.2f}; misses:\n" + "\n".join(misses)


async def test_an_org_never_retrieves_another_orgs_identical_documents(
    indexed: LanceDBVectorStore,
    onnx_embedder: OnnxEmbedder,  # noqa: F811
) -> None:
    questions = [p.question for ps in CORPUS.values() for p in ps]
    vectors = await onnx_embedder.embed(questions)
    for question, vector in zip(questions, vectors, strict=True):
        for org, prefix in ((ORG, "real_"), (DECOY_ORG, "decoy_")):
            results = await indexed.query(org, QueryRequest(vector=vector, text=question, top_k=10))
            assert results, question
            assert all(r.document_id.startswith(prefix) for r in results), (org, question)
