"""Routes: /v1/knowledge-bases (CRUD), their documents (upload, status, delete) and query."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from vocalis.core.deps import BackendsDep, SessionDep
from vocalis.core.openapi import error_responses
from vocalis.core.pagination import ListResource, Page, paginate
from vocalis.core.ratelimit import rate_limit_class
from vocalis.core.security import Principal, Scoped
from vocalis.knowledge import errors as _errors  # noqa: F401  (registers the document codes)
from vocalis.knowledge import retrieval, service
from vocalis.knowledge.models import DocumentStatus
from vocalis.knowledge.schemas import (
    DocumentOut,
    KnowledgeBaseCreate,
    KnowledgeBaseOut,
    KnowledgeBaseUpdate,
    QueryIn,
    QueryOut,
    QueryResult,
    UploadOut,
)
from vocalis.knowledge.upload import read_upload

router = APIRouter(prefix="/v1", tags=["knowledge"])

_KB_404: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such knowledge base (or another organisation's)."}
}
_DOC_404: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such knowledge base or document (or another organisation's)."}
}
_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "The document: PDF, DOCX, HTML, Markdown or text "
                            "(detected from the content).",
                        },
                        "name": {
                            "type": "string",
                            "description": "Document name (default: the file name). "
                            "Uploading a name again makes a new version.",
                        },
                    },
                }
            }
        },
    }
}


def _after(page: Page) -> str | None:
    return str(page.position["id"]) if page.position and "id" in page.position else None


# --- knowledge bases ---------------------------------------------------------------------
@router.post(
    "/knowledge-bases",
    response_model=KnowledgeBaseOut,
    status_code=201,
    summary="Create a knowledge base",
)
async def create_knowledge_base(
    body: KnowledgeBaseCreate,
    principal: Annotated[Principal, Scoped("knowledge:write")],
    session: SessionDep,
) -> KnowledgeBaseOut:
    kb = await service.create_knowledge_base(
        session=session, org_id=principal.org_id, name=body.name, description=body.description
    )
    return service.kb_out(kb, 0)


@router.get(
    "/knowledge-bases",
    response_model=ListResource[KnowledgeBaseOut],
    summary="List knowledge bases, newest first",
)
async def list_knowledge_bases(
    page: Page, principal: Annotated[Principal, Scoped("knowledge:read")], session: SessionDep
) -> ListResource[KnowledgeBaseOut]:
    kbs = await service.list_knowledge_bases(
        session=session, org_id=principal.org_id, limit=page.limit + 1, after=_after(page)
    )
    counts = await service.document_counts(
        session=session, org_id=principal.org_id, kb_ids=[kb.id for kb in kbs]
    )
    items = [service.kb_out(kb, counts.get(kb.id, 0)) for kb in kbs]
    return paginate(items, page.limit, lambda kb: {"id": kb.id})


@router.get(
    "/knowledge-bases/{kb_id}",
    response_model=KnowledgeBaseOut,
    responses=_KB_404,
    summary="Get a knowledge base",
)
async def get_knowledge_base(
    kb_id: str, principal: Annotated[Principal, Scoped("knowledge:read")], session: SessionDep
) -> KnowledgeBaseOut:
    kb = await service.get_knowledge_base(session=session, org_id=principal.org_id, kb_id=kb_id)
    counts = await service.document_counts(session=session, org_id=principal.org_id, kb_ids=[kb.id])
    return service.kb_out(kb, counts.get(kb.id, 0))


@router.patch(
    "/knowledge-bases/{kb_id}",
    response_model=KnowledgeBaseOut,
    responses=_KB_404,
    summary="Rename or re-describe a knowledge base",
)
async def update_knowledge_base(
    kb_id: str,
    body: KnowledgeBaseUpdate,
    principal: Annotated[Principal, Scoped("knowledge:write")],
    session: SessionDep,
) -> KnowledgeBaseOut:
    kb = await service.update_knowledge_base(
        session=session, org_id=principal.org_id, kb_id=kb_id, changes=body
    )
    counts = await service.document_counts(session=session, org_id=principal.org_id, kb_ids=[kb.id])
    return service.kb_out(kb, counts.get(kb.id, 0))


@router.delete(
    "/knowledge-bases/{kb_id}",
    status_code=204,
    responses=_KB_404,
    summary="Delete a knowledge base with its documents, chunks, vectors and files",
)
async def delete_knowledge_base(
    kb_id: str, principal: Annotated[Principal, Scoped("knowledge:write")], backends: BackendsDep
) -> Response:
    await service.delete_knowledge_base(backends, org_id=principal.org_id, kb_id=kb_id)
    return Response(status_code=204)


# --- documents ---------------------------------------------------------------------------
@router.post(
    "/knowledge-bases/{kb_id}/documents",
    response_model=UploadOut,
    status_code=202,
    responses={
        200: {
            "description": "The same bytes are already in the knowledge base: the existing "
            "document, with `deduplicated: true`; nothing is ingested again.",
            "model": UploadOut,
        },
        404: _KB_404[404],
        **error_responses(
            "bad_request",
            "conflict",
            "document_file_too_large",
            "document_type_unsupported",
            "document_type_not_allowed",
            "document_type_mismatch",
            "document_empty",
            "document_corrupt",
            "document_unsafe_archive",
            status_400="The multipart body is malformed.",
            status_409="Another upload of the same name is in progress; retry.",
            status_413="The file exceeds the per-document size limit.",
            status_415="The content is not a supported (or allowed) document type.",
            status_422="Empty file, corrupt or unsafe archive, missing `file` field.",
        ),
        503: {"description": "The ingestion queue is unreachable; nothing was kept."},
    },
    openapi_extra={**_UPLOAD_BODY, **rate_limit_class("uploads")},
    summary="Upload a document (multipart field `file`); ingestion runs in the background",
)
async def upload_document(
    kb_id: str,
    request: Request,
    principal: Annotated[Principal, Scoped("knowledge:write")],
    backends: BackendsDep,
) -> Any:
    settings = backends.settings
    async with backends.database.session() as session:  # 404 before reading any body
        await service.get_knowledge_base(session=session, org_id=principal.org_id, kb_id=kb_id)
    received = await read_upload(
        request.headers.get("content-type"),
        request.stream(),
        limit=service.document_limit(settings),
        too_large=service.too_large_message(settings),
    )
    result = await service.upload_document(
        backends,
        org_id=principal.org_id,
        kb_id=kb_id,
        upload=received.upload,
        name=received.name,
    )
    body = result.out().model_dump(mode="json")
    return JSONResponse(body, status_code=200 if result.deduplicated else 202)


@router.get(
    "/knowledge-bases/{kb_id}/documents",
    response_model=ListResource[DocumentOut],
    responses=_KB_404,
    summary="List a knowledge base's documents, newest first",
)
async def list_documents(
    kb_id: str,
    page: Page,
    principal: Annotated[Principal, Scoped("knowledge:read")],
    session: SessionDep,
    status: Annotated[
        DocumentStatus | None, Query(description="Only documents in this status.")
    ] = None,
) -> ListResource[DocumentOut]:
    docs = await service.list_documents(
        session=session,
        org_id=principal.org_id,
        kb_id=kb_id,
        limit=page.limit + 1,
        after=_after(page),
        status=status,
    )
    return paginate([service.document_out(d) for d in docs], page.limit, lambda d: {"id": d.id})


@router.get(
    "/knowledge-bases/{kb_id}/documents/{document_id}",
    response_model=DocumentOut,
    responses=_DOC_404,
    summary="Get a document and its ingestion status",
)
async def get_document(
    kb_id: str,
    document_id: str,
    principal: Annotated[Principal, Scoped("knowledge:read")],
    session: SessionDep,
) -> DocumentOut:
    doc = await service.get_document(
        session=session, org_id=principal.org_id, kb_id=kb_id, document_id=document_id
    )
    return service.document_out(doc)


@router.delete(
    "/knowledge-bases/{kb_id}/documents/{document_id}",
    status_code=204,
    responses=_DOC_404,
    summary="Delete a document with every version's chunks, vectors and files",
)
async def delete_document(
    kb_id: str,
    document_id: str,
    principal: Annotated[Principal, Scoped("knowledge:write")],
    backends: BackendsDep,
) -> Response:
    await service.delete_document(
        backends, org_id=principal.org_id, kb_id=kb_id, document_id=document_id
    )
    return Response(status_code=204)


# --- query -------------------------------------------------------------------------------
@router.post(
    "/knowledge-bases/{kb_id}/query",
    openapi_extra=rate_limit_class("reads"),  # a search: changes nothing
    response_model=QueryOut,
    responses=_KB_404,
    summary="Hybrid search in a knowledge base",
)
async def query_knowledge_base(
    kb_id: str,
    body: QueryIn,
    principal: Annotated[Principal, Scoped("knowledge:read")],
    session: SessionDep,
    backends: BackendsDep,
) -> QueryOut:
    await service.get_knowledge_base(session=session, org_id=principal.org_id, kb_id=kb_id)
    defaults = retrieval.default_options(backends.settings, body.top_k)
    options = retrieval.SearchOptions(
        top_k=defaults.top_k,
        filters=body.filters,
        score_threshold=body.score_threshold
        if body.score_threshold is not None
        else defaults.score_threshold,
        alpha=body.alpha if body.alpha is not None else defaults.alpha,
        mmr=body.mmr,
        mmr_lambda=body.mmr_lambda if body.mmr_lambda is not None else defaults.mmr_lambda,
    )
    hits = await retrieval.search(
        backends, org_id=principal.org_id, kb_ids=[kb_id], query=body.query, options=options
    )
    return QueryOut(
        query=body.query,
        results=[
            QueryResult(
                chunk_id=hit.id,
                text=hit.text,
                score=round(hit.score, 6),
                document_id=hit.document_id,
                document_name=hit.document_name,
                knowledge_base_id=hit.kb_id,
                version=hit.version,
                page=hit.metadata.page,
                section=hit.metadata.section,
            )
            for hit in hits
        ],
    )
