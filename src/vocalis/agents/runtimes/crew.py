"""The CrewAI runtime (`"runtime": "crewai"`): a crew of role agents answers each turn.

An agent's `crew` names its members — each a CrewAI `Agent` with a role, a goal, a
backstory and some of the agent's tools — and the process: `sequential` (one task per
member in order, each handed the previous members' work; the last one writes the reply) or
`hierarchical` (a manager delegates to the members and writes the reply). An agent with no
`crew` is a crew of one: its name is the role, its instructions the backstory.

What the crew runs on is the platform's, as on the other runtimes:

- **Model**: every member (and the manager) talks to `ChainLLM`, a CrewAI `BaseLLM` served
  by the agent's own model chain — its endpoints, the deployment default, registered
  providers, fallbacks with their breakers, `llm.chat` spans, metrics and cost ledger, the
  extractive responder last. Nothing reaches a network the chain would not call, and
  CrewAI's own telemetry and tracing are switched off before it is imported.
- **Tools**: the agent's toolbox (built-in and MCP tools) as CrewAI tools run by
  `Toolbox.execute` (schema validation, errors as results), offered to the model with their
  own names and JSON schemas; passages a tool returns are numbered for citation;
  `transfer_to_human` and `end_conversation` end the crew with their result, as in the graph.
- **Retrieval and guards**: passages for the user's message are numbered into the system
  prompt of every member's call; oversize input is refused and injection flagged before the
  crew starts; the reply passes `guards.check_output` (no leak, only real citations).
- **Streaming**: the text of the calls that write the reply (the last task's member, or the
  manager) streams as `TextDelta`s while it is generated; the other members work silently.
- **Memory**: the conversation's history is the LangGraph checkpoint's `messages`, shown to
  the crew as the conversation so far; the turn's user message and reply are appended.

CrewAI runs its agents' steps in worker threads; `ChainLLM` and the tools hand every model
call and tool run back to the turn's event loop (with the turn's tracing context), so the
chain, the database, MCP sessions and HTTP clients are only ever used on their own loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

# Nothing leaves the process: CrewAI's usage telemetry and its trace collector are off.
os.environ["CREWAI_DISABLE_TELEMETRY"] = "true"
os.environ["CREWAI_DISABLE_TRACKING"] = "true"
os.environ["CREWAI_TRACING_ENABLED"] = "false"

from crewai import Agent as CrewAgent
from crewai import Crew, Process, Task
from crewai.llms.base_llm import BaseLLM
from crewai.tools import BaseTool
from crewai.utilities.string_utils import sanitize_tool_name
from pydantic import BaseModel, ConfigDict, PrivateAttr

from vocalis.agents import guards
from vocalis.agents.events import (
    AgentEvent,
    FinalMessage,
    GuardFlag,
    HandoffEvent,
    TextDelta,
    ToolCallEvent,
    ToolResultEvent,
    TurnUsage,
)
from vocalis.agents.graph import AgentContext, AgentSpec
from vocalis.agents.prompting import (
    NumberedPassage,
    number_passages,
    system_prompt,
    tool_result_text,
)
from vocalis.agents.runtimes.chain_client import from_openai_message
from vocalis.agents.telemetry import identity, span
from vocalis.agents.tools.base import Tool, Toolbox
from vocalis.core.ids import new_id
from vocalis.ports.llm import (
    ChatMessage,
    ChatModel,
    ChatResultBuilder,
    ProviderError,
    ToolCall,
    ToolSpec,
    Usage,
    close_stream,
    estimate_prompt_tokens,
)
from vocalis.ports.retriever import Passage

Remember = Callable[[list[dict[str, Any]]], Awaitable[None]]
T = TypeVar("T")

SEQUENTIAL = "sequential"
HIERARCHICAL = "hierarchical"
REPLY_EXPECTED = "The reply to send to the user: plain text, citing passages like [1]."
NOTES_EXPECTED = "Notes for the crew member who writes the reply."
CONTEXT_WINDOW = 8192  # what CrewAI's context-overflow handling assumes of the chain


@dataclass(frozen=True)
class Member:
    """One role agent of a crew."""

    role: str
    goal: str
    backstory: str = ""
    tools: tuple[str, ...] | None = None  # the agent's tool names; None = every one


@dataclass(frozen=True)
class CrewPlan:
    """What a crew is made of: its members and its process."""

    members: tuple[Member, ...]
    process: str = SEQUENTIAL


def plan_of(crew: Mapping[str, Any] | None, name: str, instructions: str) -> CrewPlan:
    """The crew of an agent's configuration (`crew`, as stored), or a crew of one."""
    crew = crew or {}
    process = str(crew.get("process") or SEQUENTIAL)
    members = tuple(
        Member(
            role=str(m["role"]),
            goal=str(m["goal"]),
            backstory=str(m.get("backstory") or ""),
            tools=tuple(m["tools"]) if m.get("tools") is not None else None,
        )
        for m in crew.get("members") or ()
    )
    if not members:
        members = (
            Member(
                role=name or "Assistant",
                goal="Answer the user's latest message helpfully and accurately.",
                backstory=instructions,
            ),
        )
    return CrewPlan(members, process)


# --- one turn --------------------------------------------------------------------------------
@dataclass
class _Turn:
    """What one turn shares between the event loop and CrewAI's worker threads."""

    ctx: AgentContext
    loop: asyncio.AbstractEventLoop
    context: contextvars.Context
    queue: asyncio.Queue[AgentEvent]
    instructions: str = ""
    user_text: str = ""
    passages: list[NumberedPassage] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    # CrewAI's tool name -> the model's calls (id, arguments as sent) its tool runs next
    pending: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    streamed: list[str] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    cost: float = 0.0
    provider: str = ""
    model: str = ""
    latency: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    generations: int = 0
    handoff: str | None = None  # the reason, once transfer_to_human ran
    end_conversation: bool = False
    terminal_reply: str | None = None
    error: BaseException | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def emit(self, event: AgentEvent) -> None:
        """Queue an event for the caller, from the loop or a worker thread."""
        if _on_loop(self.loop):
            self.queue.put_nowait(event)
        else:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, event)

    def number(self, passages: Sequence[Passage]) -> list[NumberedPassage]:
        """The passages numbered for this turn; new ones join the turn's."""
        with self.lock:
            shown, new = number_passages(self.passages, passages)
            self.passages += new
        return shown

    def from_thread(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run a coroutine on the turn's loop from a worker thread, in the turn's context."""
        if _on_loop(self.loop):
            raise RuntimeError("a blocking CrewAI call ran on the event loop's thread")
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        def start() -> None:
            task = self.loop.create_task(make(), context=self.context.copy())

            def settle(finished: asyncio.Task[T]) -> None:
                if finished.cancelled():
                    done.cancel()
                elif finished.exception() is not None:
                    done.set_exception(finished.exception())
                else:
                    done.set_result(finished.result())

            task.add_done_callback(settle)

        self.loop.call_soon_threadsafe(start)
        return done.result()


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


# --- the model: the agent's chain behind CrewAI's LLM interface --------------------------------
class ChainLLM(BaseLLM):
    """A CrewAI LLM answered by the agent's model chain (one per member, and the manager).

    `writes_reply`: this LLM's calls for `reply_task` (or every call, when None) stream
    their text to the caller. Tool names are CrewAI's sanitised ones inside the crew and
    the toolbox's own names (with their JSON schemas) towards the model.
    """

    llm_type: str = "vocalis"
    _turn: _Turn | None = PrivateAttr(default=None)
    _chain: ChatModel | None = PrivateAttr(default=None)
    _specs: dict[str, ToolSpec] = PrivateAttr(default_factory=dict)  # sanitised -> spec
    _writes_reply: bool = PrivateAttr(default=False)
    _reply_task: Any = PrivateAttr(default=None)

    @classmethod
    def serving(
        cls, turn: _Turn, chain: ChatModel, toolbox: Toolbox, *, writes_reply: bool
    ) -> ChainLLM:
        """The LLM of one member (or the manager) for this turn."""
        llm = cls(model=chain.model or "vocalis-chain", provider="vocalis", stream=True)
        llm._turn = turn
        llm._chain = chain
        llm._specs = {sanitize_tool_name(n): t.spec for n, t in toolbox.tools.items()}
        llm._writes_reply = writes_reply
        return llm

    def supports_function_calling(self) -> bool:
        """Tools are offered natively (OpenAI-style function calls)."""
        return True

    def supports_stop_words(self) -> bool:
        """The ReAct stop words are not needed: tools are called natively."""
        return False

    def get_context_window_size(self) -> int:
        """What CrewAI may fill before it summarises."""
        return CONTEXT_WINDOW

    def get_input_tokens_count(
        self,
        messages: Any,
        tools: Any = None,
        response_model: type[BaseModel] | None = None,
    ) -> int:
        """The port's estimate of a prompt's tokens (what the chain reports when the
        server does not)."""
        raw = [{"role": "user", "content": messages}] if isinstance(messages, str) else messages
        return estimate_prompt_tokens([from_openai_message(m) for m in raw or ()])

    def call(self, messages: Any, *args: Any, **kwargs: Any) -> Any:
        """The blocking call CrewAI makes from its worker threads (arguments: `_generation`)."""
        turn = self._require_turn()
        return turn.from_thread(self._generation(messages, *args, **kwargs))

    async def acall(self, messages: Any, *args: Any, **kwargs: Any) -> Any:
        """The call CrewAI makes on an event loop (the turn's, or one of its own)."""
        turn = self._require_turn()
        generation = self._generation(messages, *args, **kwargs)
        if _on_loop(turn.loop):
            return await generation()
        return await asyncio.to_thread(turn.from_thread, generation)

    def _generation(
        self,
        messages: Any,
        tools: list[dict[str, Any]] | None = None,
        callbacks: list[Any] | None = None,
        available_functions: dict[str, Any] | None = None,
        from_task: Any = None,
        from_agent: Any = None,
        response_model: type[BaseModel] | None = None,
    ) -> Callable[[], Coroutine[Any, Any, Any]]:
        """One `call`/`acall` of CrewAI's (`BaseLLM.call`'s arguments), as the generation to
        run on the turn's loop; callbacks and response models are not used."""
        return lambda: self._generate(messages, tools, available_functions, from_task, from_agent)

    def _require_turn(self) -> _Turn:
        if self._turn is None or self._chain is None:
            raise RuntimeError("ChainLLM is built per turn with ChainLLM.serving")
        return self._turn

    def _streams(self, from_task: Any) -> bool:
        if not self._writes_reply:
            return False
        return self._reply_task is None or from_task is None or from_task is self._reply_task

    async def _generate(
        self,
        messages: Any,
        tools: list[dict[str, Any]] | None,
        available_functions: dict[str, Any] | None,
        from_task: Any,
        from_agent: Any,
    ) -> Any:
        turn, chain = self._require_turn(), self._chain
        assert chain is not None
        prompt = self._prompt(messages)
        offered = self._offered(tools)
        agent = turn.ctx.agent
        choice: str | None = None
        if offered:
            choice = "auto"
            with turn.lock:
                first = turn.generations == 0
            if agent.tool_choice == "none":
                choice = "none"
            elif agent.tool_choice and first and any(s.name == agent.tool_choice for s in offered):
                choice = agent.tool_choice
        with turn.lock:
            turn.generations += 1
        streams = self._streams(from_task)
        role = str(getattr(from_agent, "role", "") or "")
        begin = time.perf_counter()
        builder = ChatResultBuilder()
        with span("crewai.llm_call", {"crewai.role": role or None, "crewai.streams": streams}):
            deltas = chain.stream(
                prompt,
                tools=offered,
                tool_choice=choice,
                temperature=agent.temperature,
                max_tokens=agent.max_tokens,
                timeout=agent.timeout_s,
            )
            try:
                async for delta in deltas:
                    if "first_token" not in turn.latency and streams and delta.text:
                        turn.latency["first_token"] = round(
                            (time.perf_counter() - turn.started) * 1000, 1
                        )
                    if delta.text and streams:
                        turn.streamed.append(delta.text)
                        turn.emit(TextDelta(delta.text))
                    builder.add(delta)
            except ProviderError as exc:
                turn.error = exc
                raise
            finally:
                await close_stream(deltas)
        result = builder.result()
        self._record(turn, result.usage, result.provider, result.model)
        turn.latency["generate"] = round(
            turn.latency.get("generate", 0.0) + (time.perf_counter() - begin) * 1000, 1
        )
        if not result.tool_calls:
            return result.content
        calls = []
        for call in result.tool_calls:
            crew_name = sanitize_tool_name(call.name)
            if crew_name in self._specs:  # the crew's own (delegation) are spans, not events
                turn.tool_calls.append(asdict(call))
                with turn.lock:
                    turn.pending.setdefault(crew_name, []).append((call.id, call.arguments))
                turn.emit(ToolCallEvent(call.id, call.name, call.arguments))
            calls.append(
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": crew_name, "arguments": _json_object(call.arguments)},
                }
            )
        return calls

    def _prompt(self, messages: Any) -> list[ChatMessage]:
        """CrewAI's messages, after the platform's system prompt (instructions, passages)."""
        turn = self._require_turn()
        raw = [{"role": "user", "content": messages}] if isinstance(messages, str) else messages
        crew = [from_openai_message(m) for m in raw or ()]
        ours = system_prompt(
            turn.instructions,
            list(turn.passages),
            injection_suspected="prompt_injection_suspected" in turn.flags,
        )
        task = next((i for i, m in enumerate(crew) if m.role == "user"), None)
        if task is None:
            return [ChatMessage("system", ours), *crew]
        # One system message (small models follow one best): the platform's prompt, CrewAI's
        # role prompt and the crew's task framing; the user's own words are the user's
        # message, as on the other runtimes.
        framing = [m.content.strip() for m in crew[:task] if m.role == "system"]
        framing.append("Your task in the crew:\n" + crew[task].content.strip())
        rest = [m for m in crew[:task] if m.role != "system"]
        return [
            ChatMessage("system", "\n\n".join([ours, *framing])),
            *rest,
            ChatMessage("user", turn.user_text),
            *crew[task + 1 :],
        ]

    def _offered(self, tools: list[dict[str, Any]] | None) -> list[ToolSpec]:
        """The toolbox's specs of the tools CrewAI offers (crew-only tools as given)."""
        offered: list[ToolSpec] = []
        for tool in tools or ():
            function = tool.get("function") or {}
            name = str(function.get("name", ""))
            spec = self._specs.get(name)
            if spec is None:  # one of CrewAI's own (delegation in a hierarchical crew)
                spec = ToolSpec(
                    name=name,
                    description=str(function.get("description") or ""),
                    parameters=dict(function.get("parameters") or {"type": "object"}),
                )
            offered.append(spec)
        return offered

    @staticmethod
    def _record(turn: _Turn, usage: Usage, provider: str, model: str) -> None:
        ledger = turn.ctx.ledger
        cost = ledger.price_for(provider, model).cost(usage) if ledger else 0.0
        with turn.lock:
            turn.usage = turn.usage + usage
            turn.cost += cost
            turn.provider = provider or turn.provider
            turn.model = model or turn.model


# --- the tools: the agent's toolbox behind CrewAI's tool interface -----------------------------
class _AnyArguments(BaseModel):
    """The arguments of a toolbox tool as CrewAI sees them: anything (checked later)."""

    model_config = ConfigDict(extra="allow")


def _json_object(arguments: str) -> str:
    """The arguments if they are a JSON object, else `{}` (CrewAI would not run the tool,
    and the toolbox must answer the model's malformed call with an error result)."""
    try:
        return arguments if isinstance(json.loads(arguments or "{}"), dict) else "{}"
    except ValueError:
        return "{}"


class ToolboxTool(BaseTool):
    """One of the agent's tools, run by the toolbox on the turn's event loop."""

    _turn: _Turn | None = PrivateAttr(default=None)
    _toolbox: Toolbox | None = PrivateAttr(default=None)
    _tool_name: str = PrivateAttr(default="")

    @classmethod
    def wrapping(cls, turn: _Turn, toolbox: Toolbox, name: str, tool: Tool) -> ToolboxTool:
        """The CrewAI tool for `name` of `toolbox`."""
        built = cls(
            name=name,
            description=tool.spec.description or name,
            # CrewAI passes any arguments on: the toolbox checks what the model sent against
            # the tool's JSON schema, and a bad call is an error result, as on every runtime.
            args_schema=_AnyArguments,
            # A handoff or an ended conversation ends the crew with the tool's line.
            result_as_answer=tool.kind in ("transfer_to_human", "end_conversation"),
        )
        built._turn = turn
        built._toolbox = toolbox
        built._tool_name = name
        return built

    def _run(self, *args: Any, **kwargs: Any) -> str:
        turn = self._require_turn()
        return turn.from_thread(lambda: self._execute(kwargs))

    async def _arun(self, *args: Any, **kwargs: Any) -> str:
        turn = self._require_turn()
        if _on_loop(turn.loop):
            return await self._execute(kwargs)
        return await asyncio.to_thread(turn.from_thread, lambda: self._execute(kwargs))

    def _require_turn(self) -> _Turn:
        if self._turn is None or self._toolbox is None:
            raise RuntimeError("ToolboxTool is built per turn with ToolboxTool.wrapping")
        return self._turn

    async def _execute(self, arguments: dict[str, Any]) -> str:
        turn, toolbox = self._require_turn(), self._toolbox
        assert toolbox is not None
        crew_name = sanitize_tool_name(self._tool_name)
        with turn.lock:
            waiting = turn.pending.get(crew_name) or []
            sent = waiting.pop(0) if waiting else None
        if sent is None:  # not a call our LLM relayed: CrewAI's own arguments
            sent = (new_id("call"), json.dumps(arguments, default=str))
        call = ToolCall(id=sent[0], name=self._tool_name, arguments=sent[1])
        begin = time.perf_counter()
        with span("agent.tool", {"vocalis.tool.name": self._tool_name}):
            result = await toolbox.execute(call, turn.ctx.tool_context())
        turn.latency["tools"] = round(
            turn.latency.get("tools", 0.0) + (time.perf_counter() - begin) * 1000, 1
        )
        content = tool_result_text(result.content, turn.number(result.passages), turn.user_text)
        if guards.injection_flags(content):
            turn.flags.append("prompt_injection_in_tool_result")
            turn.emit(GuardFlag("prompt_injection_in_tool_result", self._tool_name))
        turn.emit(ToolResultEvent(call.id, self._tool_name, result.content, result.is_error))
        if result.handoff:
            turn.handoff = str(result.data.get("reason", "") or "")
        if result.end_conversation:
            turn.end_conversation = True
        if result.terminal:
            turn.terminal_reply = result.content
        return content


# --- the engine --------------------------------------------------------------------------------
class CrewEngine:
    """Runs turns of agents whose `runtime` is `crewai`."""

    async def run(
        self,
        ctx: AgentContext,
        user_text: str,
        plan: CrewPlan,
        *,
        history: Sequence[dict[str, Any]],
        remember: Remember,
    ) -> AsyncIterator[AgentEvent]:
        """One turn: yields text deltas, tool calls and results, a `FinalMessage` last."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[AgentEvent] = asyncio.Queue()
        turn = _Turn(
            ctx, loop, contextvars.copy_context(), queue, ctx.agent.instructions, user_text
        )
        limits = ctx.agent.limits
        if len(user_text) > limits.max_input_chars:
            turn.flags.append("input_too_large")
            yield GuardFlag("input_too_large", f"{len(user_text)} characters")
            async for event in self._finish(turn, user_text, guards.TOO_LONG_REPLY, remember):
                yield event
            return
        injection = guards.injection_flags(user_text)
        if injection:
            turn.flags.append("prompt_injection_suspected")
            yield GuardFlag("prompt_injection_suspected", injection[0])
        with (
            identity(ctx.org_id, ctx.conversation_id, ctx.agent.agent_id),
            span(
                "agent.run",
                {
                    "vocalis.agent.runtime": "crewai",
                    "crewai.process": plan.process,
                    "crewai.members": len(plan.members),
                },
            ),
        ):
            if ctx.agent.knowledge_base_ids:
                begin = time.perf_counter()
                with span("agent.node.retrieve"):
                    found = await ctx.retriever.retrieve(
                        ctx.org_id, list(ctx.agent.knowledge_base_ids), user_text, limits.top_k
                    )
                turn.number(found)
                turn.latency["retrieve"] = round((time.perf_counter() - begin) * 1000, 1)
            turn.context = contextvars.copy_context()  # spans opened by the crew nest here
            crew = self.crew(turn, plan, user_text, history)
            work = asyncio.create_task(crew.akickoff(), context=turn.context.copy())
            try:
                while not work.done() or not queue.empty():
                    getter = asyncio.ensure_future(queue.get())
                    await asyncio.wait({getter, work}, return_when=asyncio.FIRST_COMPLETED)
                    if getter.done():
                        yield getter.result()
                    else:
                        getter.cancel()
                        await asyncio.sleep(0)  # events queued from threads land first
                        while not queue.empty():
                            yield queue.get_nowait()
                try:
                    output = work.result()
                except Exception:
                    if turn.error is not None:
                        raise turn.error from None
                    raise
            finally:
                if not work.done():
                    work.cancel()
                    await asyncio.gather(work, return_exceptions=True)
        draft = (
            turn.terminal_reply
            if turn.terminal_reply is not None
            else str(getattr(output, "raw", "") or "")
        )
        if turn.handoff is not None:
            await self._handoff(turn, user_text)
        async for event in self._finish(turn, user_text, draft, remember):
            yield event

    def crew(
        self, turn: _Turn, plan: CrewPlan, user_text: str, history: Sequence[dict[str, Any]]
    ) -> Crew:
        """The CrewAI crew for one turn."""
        ctx = turn.ctx
        toolbox = ctx.toolbox
        hierarchical = plan.process == HIERARCHICAL
        transcript = _transcript(history, ctx.agent.limits.max_history_messages)
        llms: list[ChainLLM] = []
        members: list[CrewAgent] = []
        for index, member in enumerate(plan.members):
            last = index == len(plan.members) - 1
            llm = ChainLLM.serving(turn, ctx.model, toolbox, writes_reply=last and not hierarchical)
            llms.append(llm)
            names = member.tools if member.tools is not None else tuple(toolbox.tools)
            members.append(
                CrewAgent(
                    role=member.role,
                    goal=member.goal,
                    backstory=member.backstory or member.goal,
                    tools=[
                        ToolboxTool.wrapping(turn, toolbox, n, toolbox.tools[n])
                        for n in names
                        if n in toolbox.tools
                    ],
                    llm=llm,
                    allow_delegation=False,
                    max_iter=ctx.agent.limits.max_tool_iterations + 1,
                    verbose=False,
                )
            )
        question = (
            f"{transcript}The user's latest message:\n{user_text}" if transcript else user_text
        )
        if hierarchical:
            tasks = [
                Task(
                    description=f"Answer the user's message with the crew's help.\n\n{question}",
                    expected_output=REPLY_EXPECTED,
                )
            ]
            manager = ChainLLM.serving(turn, ctx.model, toolbox, writes_reply=True)
            return Crew(
                agents=members,
                tasks=tasks,
                process=Process.hierarchical,
                manager_llm=manager,
                verbose=False,
                memory=False,
                tracing=False,
            )
        tasks = []
        for index, (member, agent) in enumerate(zip(plan.members, members, strict=True)):
            last = index == len(plan.members) - 1
            tasks.append(
                Task(
                    description=f"{question}\n\nYour part, as {member.role}: {member.goal}",
                    expected_output=REPLY_EXPECTED if last else NOTES_EXPECTED,
                    agent=agent,
                )
            )
        llms[-1]._reply_task = tasks[-1]
        return Crew(
            agents=members,
            tasks=tasks,
            process=Process.sequential,
            verbose=False,
            memory=False,
            tracing=False,
        )

    async def _handoff(self, turn: _Turn, user_text: str) -> None:
        ctx = turn.ctx
        if ctx.events is not None:
            payload = {
                "org_id": ctx.org_id,
                "conversation_id": ctx.conversation_id,
                "agent_id": ctx.agent.agent_id,
                "reason": turn.handoff or "",
                "last_user_message": user_text,
            }
            try:
                await ctx.events("handoff.requested", payload)
            except Exception:
                turn.flags.append("handoff_event_failed")
        turn.emit(HandoffEvent(turn.handoff or ""))

    async def _finish(
        self, turn: _Turn, user_text: str, draft: str, remember: Remember
    ) -> AsyncIterator[AgentEvent]:
        while not turn.queue.empty():
            yield turn.queue.get_nowait()
        settled = guards.settle_reply(
            draft,
            streamed="".join(turn.streamed),
            instructions=turn.ctx.agent.instructions,
            passages={p.n: p.passage for p in turn.passages},
            max_chars=turn.ctx.agent.limits.max_output_chars,
            question=user_text,
        )
        for event in settled.events:
            yield event
        message_id = new_id("msg")
        final = FinalMessage(
            message_id=message_id,
            content=settled.content,
            citations=settled.citations,
            tool_calls=tuple(turn.tool_calls),
            usage=TurnUsage(
                turn.usage.prompt_tokens,
                turn.usage.completion_tokens,
                round(turn.cost, 8),
                turn.usage.estimated,
                turn.provider,
                turn.model,
            ),
            latency_ms={
                **turn.latency,
                "total": round((time.perf_counter() - turn.started) * 1000, 1),
            },
            flags=tuple(dict.fromkeys([*turn.flags, *settled.flags])),
            handoff=turn.handoff is not None,
            end_conversation=turn.end_conversation,
            replaced=settled.replaced,
        )
        await remember(
            [
                {"id": new_id("msg"), "role": "user", "content": user_text},
                {
                    "id": message_id,
                    "role": "assistant",
                    "content": settled.content,
                    "provider": turn.provider,
                    "model": turn.model,
                    "citations": [asdict(c) for c in final.citations],
                },
            ]
        )
        yield final


def _transcript(history: Sequence[dict[str, Any]], limit: int) -> str:
    lines = [
        f"{m['role']}: {m['content']}"
        for m in history[-limit:]
        if m.get("role") in ("user", "assistant") and m.get("content")
    ]
    return "The conversation so far:\n" + "\n".join(lines) + "\n\n" if lines else ""


# --- the workflow, drawn from the CrewAI objects a turn builds (for the generated docs) -------
EXAMPLE_CREW = {
    "members": [
        {
            "role": "Researcher",
            "goal": "Find what the policies say.",
            "tools": ["search_knowledge", "http_request"],
        },
        {"role": "Writer", "goal": "Write the reply.", "tools": ["transfer_to_human"]},
    ]
}


def crew_mermaid(process: str) -> str:
    """A turn's crew as a Mermaid flowchart: the example crew (two members) run `process`."""
    from crewai.tools.agent_tools.agent_tools import AgentTools

    from vocalis.agents.tools.base import build_toolbox, load_builtin_kinds

    toolbox = build_toolbox(
        [{"type": k} for k in sorted(load_builtin_kinds()) if k != "http_request"]
        + [
            {
                "type": "http_request",
                "name": "http_request",
                "url": "https://api.example.com/orders",
            }
        ]
    )
    ctx = AgentContext(
        org_id="org",
        conversation_id="cnv",
        agent=AgentSpec(agent_id="agt"),
        model=_Drawn(),  # type: ignore[arg-type]  # never called
        toolbox=toolbox,
    )
    loop = asyncio.new_event_loop()
    try:
        turn = _Turn(ctx, loop, contextvars.copy_context(), asyncio.Queue())
        plan = plan_of({**EXAMPLE_CREW, "process": process}, "", "")
        crew = CrewEngine().crew(turn, plan, "user message", [])
    finally:
        loop.close()

    def node(agent: Any) -> str:
        return sanitize_tool_name(str(agent.role))

    def tools(agent: Any) -> str:
        return ", ".join(sanitize_tool_name(t.name) for t in agent.tools) or "no tools"

    lines = [
        "flowchart TD",
        "  start([user message]) --> input_guard[input guard]",
        "  input_guard -->|blocked| output_guard",
        "  input_guard --> retrieve[retrieve: passages numbered into every call's system prompt]",
    ]
    if crew.process == Process.hierarchical:
        delegation = ", ".join(sanitize_tool_name(t.name) for t in AgentTools(crew.agents).tools())
        lines.append("  retrieve --> manager[manager: the one task, writes the reply, streamed]")
        for member in crew.agents:
            lines.append(f"  manager -->|{delegation}| {node(member)}[{member.role}]")
            lines.append(
                f"  {node(member)} <-->|tool calls| {node(member)}_tools[[{tools(member)}]]"
            )
        lines.append("  manager --> output_guard")
    else:
        previous = "retrieve"
        for index, task in enumerate(crew.tasks, 1):
            agent: Any = task.agent
            last = index == len(crew.tasks)
            label = f"task {index}: {agent.role}" + (", writes the reply, streamed" if last else "")
            edge = " -->|its output as context| " if index > 1 else " --> "
            lines.append(f"  {previous}{edge}{node(agent)}[{label}]")
            lines.append(f"  {node(agent)} <-->|tool calls| {node(agent)}_tools[[{tools(agent)}]]")
            previous = node(agent)
        lines.append(f"  {previous} --> output_guard")
    lines += [
        "  output_guard[output guard: citations, leaks, length] --> remember[(checkpoint messages)]",
        "  remember --> final([FinalMessage])",
    ]
    return "\n".join(lines)


class _Drawn:
    """The model of a crew drawn for the documentation (never called)."""

    provider = "docs"
    model = "docs"


__all__ = [
    "ChainLLM",
    "CrewEngine",
    "CrewPlan",
    "Member",
    "ToolboxTool",
    "crew_mermaid",
    "plan_of",
]
