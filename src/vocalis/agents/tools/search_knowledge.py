"""`search_knowledge`: the model searches the agent's knowledge bases mid-turn."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vocalis.agents.tools.base import Tool, ToolContext, ToolResult, option, register_tool_kind
from vocalis.ports.llm import ToolSpec

KIND = "search_knowledge"


@dataclass(frozen=True)
class SearchKnowledge:
    """Retrieves passages from the agent's knowledge bases for a query."""

    spec: ToolSpec
    default_top_k: int = 5
    max_top_k: int = 20
    kind: str = KIND

    async def run(self, arguments: Mapping[str, Any], ctx: ToolContext) -> ToolResult:
        """Passages for the query (the graph numbers and formats them for citation)."""
        query = str(arguments["query"]).strip()
        top_k = min(int(arguments.get("top_k") or self.default_top_k), self.max_top_k)
        if not ctx.knowledge_base_ids:
            return ToolResult(content="This agent has no knowledge bases to search.")
        passages = await ctx.retriever.retrieve(
            ctx.org_id, list(ctx.knowledge_base_ids), query, top_k
        )
        if not passages:
            return ToolResult(content=f"No passages found for {query!r}.", data={"query": query})
        return ToolResult(
            content=f"{len(passages)} passages found.",
            data={"query": query, "chunk_ids": [p.chunk_id for p in passages]},
            passages=tuple(passages),
        )


@register_tool_kind(KIND, "Search the agent's knowledge bases; results are citable passages.")
def build(config: Mapping[str, Any]) -> Tool:
    """A search_knowledge tool from its configuration (`top_k`, `description`)."""
    spec = ToolSpec(
        name=option(config, "name", KIND),
        description=option(
            config,
            "description",
            "Search the knowledge base for passages relevant to a question. Use it when "
            "the passages already in context do not answer the question.",
        ),
        parameters={
            "type": "object",
            "properties": {
                "query": {"type": "string", "minLength": 1, "description": "What to look up."},
                "top_k": {"type": "integer", "minimum": 1, "maximum": 20},
            },
            "required": ["query"],
            "additionalProperties": False,
        },
    )
    return SearchKnowledge(spec=spec, default_top_k=int(option(config, "top_k", 5)))
