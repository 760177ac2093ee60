"""The ``agentfsm`` command: ``demo``, ``graph``, ``inspect``, ``chat``, ``migrate`` and
``recover``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import logging
import os
import signal
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentfsm.agent import Agent
    from agentfsm.agents import AsyncOpenAIStreamingAgent
    from agentfsm.messages import Message
    from agentfsm.response import AgentResponse
    from agentfsm.state import Conversation
    from agentfsm.store import Store

__all__ = ["main"]

_FORMATS = ("mermaid", "dot", "json")
_LEVELS = {  # structlog's method names -> logging levels
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "msg": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}
_STORE_FORMS = "sqlite:///PATH, redis://HOST[:PORT][/DB] or postgresql://USER@HOST/DB"
# The options of `chat` that build an agent; with --agent, the agent has its own.
_AGENT_SETTINGS = ("--model", "--base-url", "--api-key", "--store", "--system", "--max-turns",
                   "--accurate")  # fmt: skip


class _CommandError(Exception):
    """A failure the command explains in one line (no exception type in front)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``agentfsm`` console script; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    _configure_logging(args.debug)
    try:
        if args.command == "demo":
            asyncio.run(_demo())
        elif args.command == "graph":
            _graph(args.format, args.agent)
        elif args.command == "inspect":
            _check_sqlite_file(args.store)  # inspecting must not create a database file
            asyncio.run(_inspect(args.chat_id, args.store, mermaid=args.mermaid))
        elif args.command == "chat":
            asyncio.run(_chat(args))
        elif args.command == "migrate":
            _check_sqlite_file(args.store)
            asyncio.run(_migrate(args.store))
        elif args.command == "recover":
            _check_sqlite_file(args.store)
            asyncio.run(_recover(args.store, args.agent, args.on_lost, args.limit))
    except KeyboardInterrupt:
        return 130
    except _CommandError as error:
        if args.debug:
            raise
        print(f"agentfsm: error: {_one_line(str(error))}", file=sys.stderr)
        return 1
    except Exception as error:
        if args.debug:
            raise
        print(f"agentfsm: error: {type(error).__name__}: {_one_line(str(error))}", file=sys.stderr)
        return 1
    return 0


def _one_line(text: str) -> str:
    """An error message on one line: drivers add DETAIL and HINT lines, tracebacks are for
    ``--debug``."""
    return " ".join(text.split())


def _parser() -> argparse.ArgumentParser:
    from agentfsm import __version__

    parser = argparse.ArgumentParser(
        prog="agentfsm", description="LLM agents as explicit state machines."
    )
    parser.add_argument("--version", action="version", version=f"agentfsm {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks on errors, and every log line"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser(
        "demo", help="run the weather agent offline against the built-in scripted server"
    )

    graph = commands.add_parser(
        "graph",
        help="print the state machine, generated from its transition table",
        description="Print the state machine, generated from agentfsm.machine. "
        "Regenerate the pinned snapshot with: "
        "python -m agentfsm graph > tests/snapshots/machine.mmd",
    )
    graph.add_argument("--format", choices=_FORMATS, default="mermaid", help="default: mermaid")
    graph.add_argument(
        "--agent",
        metavar="MODULE:NAME",
        help="grey the edges this agent's configuration rules out (e.g. myapp.agents:agent)",
    )

    inspect = commands.add_parser(
        "inspect",
        help="show a stored conversation: phase, messages, usage, cost and its run",
    )
    inspect.add_argument("chat_id", metavar="CHAT_ID")
    inspect.add_argument("--store", required=True, metavar="URL", help=_STORE_FORMS)
    inspect.add_argument(
        "--mermaid", action="store_true", help="print the run as a Mermaid diagram instead"
    )

    migrate = commands.add_parser(
        "migrate",
        help="rewrite the chats an agentfsm 0.1.0 stored whole in today's layout",
        description="Rewrite every chat stored whole (agentfsm 0.1.0) as a header and its "
        "items, at the same version; safe while workers use the store. Each chat is also "
        "migrated by its first save, so this is optional.",
    )
    migrate.add_argument("--store", required=True, metavar="URL", help=_STORE_FORMS)

    recover = commands.add_parser(
        "recover",
        help="resume (or stop) the chats whose worker died mid-run",
        description="Take the chats of the store that are mid-run with no live lease (their "
        "worker died) and resume them with your agent, each exactly once however many "
        "workers recover at the same time; print each and how it ended.",
    )
    recover.add_argument("--store", required=True, metavar="URL", help=_STORE_FORMS)
    recover.add_argument(
        "--agent",
        required=True,
        metavar="MODULE:NAME",
        help="the agent (and its tools) that runs the chats, e.g. myapp.agents:agent",
    )
    recover.add_argument(
        "--on-lost",
        choices=("resume", "stop"),
        default="resume",
        help="resume each chat (default), or stop it with stop reason worker_lost",
    )
    recover.add_argument(
        "--limit", type=int, default=100, help="the most chats to take (default: 100)"
    )

    chat = commands.add_parser(
        "chat",
        help="chat with a model, or your own agent, in the terminal (Ctrl-C stops a run, "
        "Ctrl-D exits)",
        description="Chat in the terminal with a model through a streaming agent, or with "
        "your own agent and its tools (--agent). Ctrl-C during an answer stops the run (the "
        "chat goes on); Ctrl-C at the prompt or Ctrl-D (end of input) exits.",
    )
    chat.add_argument(
        "--agent",
        metavar="MODULE:NAME",
        help="chat with this agent of yours, its tools, hooks and store (e.g. "
        f"myapp.agents:agent); it replaces {', '.join(_AGENT_SETTINGS)}",
    )
    chat.add_argument("--model", help="the model (required without --agent)")
    chat.add_argument("--base-url", help="an OpenAI-compatible endpoint (default: OpenAI's)")
    chat.add_argument("--api-key", help="the endpoint's key (default: $OPENAI_API_KEY)")
    chat.add_argument("--store", metavar="URL", help=f"keep the chat in a store: {_STORE_FORMS}")
    chat.add_argument("--chat-id", help="the chat to continue (with a store) or to create")
    chat.add_argument("--user-id", help="the user the chat belongs to")
    chat.add_argument("--system", metavar="PROMPT", help="a system prompt")
    chat.add_argument("--max-turns", type=int, help="model calls per message (default: 10)")
    chat.add_argument(
        "--accurate",
        action="store_true",
        help="count tokens with tiktoken (may download an encoding) instead of estimating",
    )
    return parser


def _configure_logging(debug: bool) -> None:
    """Library log lines go to stderr: warnings only, or everything with ``--debug``."""
    import structlog

    threshold = logging.DEBUG if debug else logging.WARNING

    def by_level(_logger: Any, method: str, event: MutableMapping[str, Any]) -> Any:
        if _LEVELS.get(method, logging.INFO) < threshold:
            raise structlog.DropEvent
        return event

    structlog.configure(
        processors=[
            by_level,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%H:%M:%S", utc=False),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


# --------------------------------------------------------------------------- demo


async def _demo() -> None:
    try:
        from agentfsm.testing import ScriptedOpenAIServer, weather_scenario
    except ImportError as error:  # pragma: no cover - depends on the install
        raise _CommandError(
            "the demo needs the testing extra: pip install 'agentfsm[testing]'"
        ) from error
    from agentfsm import AsyncOpenAISimpleAgent, ToolContext, tool
    from agentfsm.viz import run_mermaid

    @tool
    async def get_weather(city: str, context: ToolContext) -> str:
        """Current weather for a city.

        Args:
            city: the city name, e.g. "Tokyo".
        """
        return f"Sunny, 22 °C in {city} (asked by {context.user_id})"

    async with ScriptedOpenAIServer(weather_scenario) as server:
        agent = AsyncOpenAISimpleAgent(
            agent_name="Weather Agent",
            model="scripted-model",
            api_key="not-needed-offline",
            base_url=server.base_url,
            system_prompt="You are a helpful assistant.",
            tool_registry=[get_weather],
            context_handling_method="simple",  # offline: no tokenizer download
        )
        print(f"agentfsm demo: {agent!r}\n  scripted server at {server.base_url}\n")
        response = await agent.send_message(
            "what is the weather in tokyo", user_id="u1", chat_id="demo", debug_print=True
        )
        await agent.aclose()
        print()
        print(f"output:      {response.output}")
        print(f"stop_reason: {response.stop_reason.value}")
        print(f"turns:       {response.turns}")
        print(
            f"usage:       {response.usage.total_tokens} tokens in "
            f"{response.usage.requests} requests"
        )
        print(
            "path:        "
            + " → ".join(
                ["trimming_context"] + [r.to_phase.value for r in response.conversation.transitions]
            )
        )
        print("\nthe run as Mermaid (paste into https://mermaid.live):\n")
        sys.stdout.write(run_mermaid(response.conversation))


# --------------------------------------------------------------------------- graph


def _graph(format: str, agent_ref: str | None) -> None:
    from agentfsm.viz import machine_dot, machine_json, machine_mermaid

    agent = _import_agent(agent_ref) if agent_ref else None
    if format == "dot":
        sys.stdout.write(machine_dot(agent))
    elif format == "json":
        sys.stdout.write(json.dumps(machine_json(agent), indent=2) + "\n")
    else:
        sys.stdout.write(machine_mermaid(agent))


def _import_agent(ref: str) -> Agent:
    from agentfsm.agent import Agent

    module_name, _, name = ref.partition(":")
    if not module_name or not name:
        raise _CommandError(f"--agent must be MODULE:NAME (e.g. myapp.agents:agent), got {ref!r}")
    sys.path.insert(0, os.getcwd())  # as `python -m` would: the project's own modules
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise _CommandError(f"--agent: cannot import {module_name!r}: {error}") from error
    agent = getattr(module, name, None)
    if not isinstance(agent, Agent):
        raise _CommandError(f"--agent: {ref} is not an agent (got {type(agent).__name__})")
    return agent


# --------------------------------------------------------------------------- stores


def _sqlite_path(url: str) -> str | None:
    """The file of a ``sqlite:///PATH`` URL (``sqlite:////abs/path`` for an absolute one)."""
    if not url.lower().startswith("sqlite://"):
        return None
    path = url[len("sqlite://") :]
    return path[1:] if path.startswith("/") else path


def _check_sqlite_file(url: str) -> None:
    path = _sqlite_path(url)
    if path and path != ":memory:" and not os.path.exists(path):
        hint = ""
        if not os.path.isabs(path):
            # sqlite:///tmp/x.db is the relative tmp/x.db: the URL form SQLAlchemy uses too.
            hint = (
                f"; a path after sqlite:/// is relative to {os.getcwd()!r}, an absolute path "
                f"needs four slashes: sqlite:////{path}"
            )
        raise _CommandError(f"no database file at {path!r} (--store {url}){hint}")


def _open_store(url: str) -> Store:
    """The store a URL names: ``sqlite:///PATH``, ``redis://…`` or ``postgresql://…``."""
    from agentfsm.store import PostgresStore, RedisStore, SQLiteStore

    scheme = url.partition("://")[0].lower()
    path = _sqlite_path(url)
    if path is not None:
        if not path:
            raise _CommandError(f"--store {url!r} names no file: use sqlite:///PATH")
        return SQLiteStore(path)
    if scheme in ("redis", "rediss", "unix"):
        return RedisStore(url)
    if scheme in ("postgresql", "postgres"):
        return PostgresStore(url)
    raise _CommandError(f"--store {url!r} is not a store URL: use {_STORE_FORMS}")


# --------------------------------------------------------------------------- migrate


async def _migrate(url: str) -> None:
    store = _open_store(url)
    async with store:
        count = await store.migrate()  # type: ignore[attr-defined]
    print(f"migrated {count} chat{'' if count == 1 else 's'} in {url}")


async def _recover(url: str, agent_ref: str, on_lost: str, limit: int) -> None:
    agent = _import_agent(agent_ref)
    store = _open_store(url)
    async with store:
        agent.store = store  # the store named on the command line, whatever the agent had
        try:
            recovered = await agent.recover(limit=limit, on_lost=on_lost)  # type: ignore[arg-type]
        finally:
            await agent.aclose()
    for conversation in recovered:
        reason = conversation.stop_reason.value if conversation.stop_reason else "running"
        print(f"{conversation.chat_id}: {conversation.phase.value} ({reason})")
    print(f"recovered {len(recovered)} chat{'' if len(recovered) == 1 else 's'}")


# --------------------------------------------------------------------------- inspect


async def _inspect(chat_id: str, url: str, *, mermaid: bool) -> None:
    from agentfsm.composition import load_children
    from agentfsm.viz import run_mermaid

    store = _open_store(url)
    async with store:
        conversation = await store.load(chat_id)
        if conversation is None:
            raise _CommandError(f"chat {chat_id!r} is not in the store {url}")
        children = await load_children(store, conversation)
    if mermaid:
        sys.stdout.write(run_mermaid(conversation, children))
    else:
        print(_describe(conversation))
        if children:
            print(_describe_children(conversation.chat_id, children))


def _describe_children(chat_id: str, children: Mapping[str, Conversation]) -> str:
    """The sub-agent chats of ``chat_id`` (agents run as tools), one line each, nested."""
    lines = [f"\nsub-agent chats ({len(children)})"]
    for child_id in sorted(children):
        child = children[child_id]
        depth = child_id[len(chat_id) :].count("/")
        status = child.phase.value
        if child.stop_reason is not None:
            status += f" ({child.stop_reason.value})"
        lines.append(
            f"  {'  ' * (depth - 1)}{child_id}  {child.agent_name}  {status}  "
            f"{child.usage.total_tokens} tokens  ${child.cost}"
        )
    return "\n".join(lines)


def _describe(conv: Conversation) -> str:
    """A conversation for a terminal: the facts, its messages, and its run as a timeline."""
    from agentfsm.viz import run_timeline

    usage = conv.usage
    status = conv.phase.value
    if conv.stop_reason is not None:
        status += f" (stop_reason: {conv.stop_reason.value})"
    lines = [
        f"chat      {conv.chat_id}",
        f"user      {conv.user_id if conv.user_id is not None else '-'}",
        f"agent     {conv.agent_name}",
        f"phase     {status}",
        f"version   {conv.version}",
        f"usage     {usage.total_tokens} tokens ({usage.prompt_tokens} prompt, "
        f"{usage.completion_tokens} completion) in {usage.requests} requests"
        + (" (estimated)" if usage.estimated else ""),
        f"cost      ${conv.cost}",
    ]
    if conv.budget is not None:
        lines.append(f"budget    ${conv.budget.max_budget_for_this_chat}")
    if conv.error is not None and conv.stop_reason is not None and conv.phase.terminal:
        lines.append(f"error     {conv.error.type}: {_clip(conv.error.message, 100)}")
    if conv.summary:
        lines.append(f"summary   {_clip(conv.summary, 100)} (of {conv.summary_upto} messages)")
    lines.append(f"\nmessages ({len(conv.messages)})")
    width = len(str(max(len(conv.messages) - 1, 0)))
    for i, message in enumerate(conv.messages):
        lines.append(f"  [{i:>{width}}] {message.role:<9} {_message_text(message)}")
    timeline = run_timeline(conv)
    lines.append(f"\nrun ({len(timeline)} transitions)")
    if timeline:
        first = timeline[0]["at"]
        started = datetime.fromtimestamp(first).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(f"  started {started}")
        lines.append(f"  {'#':>3}  {'at':>9}  {'from':<16}  {'to':<16}  {'reason':<20}  turn  took")
        for n, step in enumerate(timeline, 1):
            took = "-" if step["duration"] is None else f"{step['duration']:.3f}s"
            lines.append(
                f"  {n:>3}  {'+' + format(step['at'] - first, '.3f') + 's':>9}  "
                f"{step['from']:<16}  {step['to']:<16}  {step['reason']:<20}  "
                f"{step['turn']:>4}  {took}"
            )
    return "\n".join(lines)


def _message_text(message: Message) -> str:
    from agentfsm.messages import AssistantMessage, TextPart, ToolMessage

    if isinstance(message, ToolMessage):
        error = " (error)" if message.is_error else ""
        return _clip(f"{message.tool_name or message.tool_call_id}{error}: {message.content}", 100)
    if isinstance(message, AssistantMessage):
        calls = [f"→ {c.name}({_clip(c.arguments, 60)})" for c in message.tool_calls]
        text = " ".join([_clip(message.content or "", 100), *calls]).strip()
        return text + (" [interrupted]" if message.interrupted else "")
    content = message.content
    if isinstance(content, str):
        return _clip(content, 100)
    parts = [p.text if isinstance(p, TextPart) else f"[{_part_kind(p)}]" for p in content]
    return _clip(" ".join(parts), 100)


def _part_kind(part: object) -> str:
    """The OpenAI ``type`` of a content part (``image_url``, ``input_audio`` …)."""
    to_openai = getattr(part, "to_openai", None)
    data = to_openai() if callable(to_openai) else getattr(part, "data", None)
    kind = data.get("type") if isinstance(data, Mapping) else None
    return kind if isinstance(kind, str) else "part"


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------- chat


async def _chat(args: argparse.Namespace) -> None:
    agent = _chat_agent(args)
    chat_id: str = args.chat_id or uuid.uuid4().hex[:12]
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(agent.aclose)
        store = agent.store
        if store is not None:
            await stack.enter_async_context(store)
        session = _ChatSession(agent, chat_id, args.user_id)
        await session.run(continued=await store.load(chat_id) if store is not None else None)


def _chat_agent(args: argparse.Namespace) -> Agent:
    """The agent ``chat`` talks to: the user's own (``--agent``), or one built from options."""
    if args.agent:
        given = [
            option
            for option in _AGENT_SETTINGS
            if getattr(args, option[2:].replace("-", "_")) not in (None, False)
        ]
        if given:
            raise _CommandError(
                f"{', '.join(given)} cannot be combined with --agent: the agent has its own "
                "settings (set them where it is built)"
            )
        return _import_agent(args.agent)
    if not args.model:
        raise _CommandError("chat needs --model (or --agent MODULE:NAME for your own agent)")
    from agentfsm.agents import AsyncOpenAIStreamingAgent

    return AsyncOpenAIStreamingAgent(
        model=args.model,
        base_url=args.base_url,
        api_key=args.api_key,
        system_prompt=args.system or "",
        max_turns=args.max_turns if args.max_turns is not None else 10,
        store=_open_store(args.store) if args.store else None,
        context_handling_method="accurate" if args.accurate else "simple",
    )


_EOF = object()
_INTERRUPT = object()


class _ChatSession:
    """One terminal chat: lines in from stdin, streamed answers out, Ctrl-C as the stop."""

    def __init__(self, agent: Agent, chat_id: str, user_id: str | None):
        self.agent = agent
        self.chat_id = chat_id
        self.user_id = user_id
        self.conversation: Conversation | None = None
        self.running = False
        self.inbox: asyncio.Queue[object] = asyncio.Queue()

    async def run(self, continued: Conversation | None) -> None:
        loop = asyncio.get_running_loop()
        where = f"chat {self.chat_id}"
        if continued is not None:
            where += f", continued: {len(continued.messages)} messages so far"
        _say(
            f"agentfsm chat · {self.agent.model} · {where}\n"
            "Ctrl-C stops an answer; Ctrl-C at the prompt or Ctrl-D exits.\n"
        )
        threading.Thread(target=self._read_stdin, args=(loop,), daemon=True).start()
        with _sigint_handler(loop, self._on_sigint):
            while True:
                _say("you> ")
                line = await self.inbox.get()
                if line is _EOF or line is _INTERRUPT:
                    _say("\n")
                    return
                assert isinstance(line, str)
                if not line.strip():
                    continue
                await self._answer(line.strip())

    async def _answer(self, text: str) -> None:
        from agentfsm.errors import AgentFSMError

        keep = self.agent.store is None  # without a store, the session holds the chat
        self.running = True
        _say("assistant> ")
        try:
            if isinstance(self.agent, _streaming_agent()):
                response = await self._stream(self.agent, text, keep)
            else:
                response = await self.agent.send_message(
                    text,
                    user_id=self.user_id,
                    chat_id=self.chat_id,
                    conversation=self.conversation if keep else None,
                )
                _show_tools(response.conversation)
                _say(response.output)
            if response is not None:
                self.conversation = response.conversation
                _say("\n")
                if response.stop_reason.value != "response":
                    detail = f": {response.error.message}" if response.error else ""
                    _say(f"[stopped: {response.stop_reason.value}{_one_line(detail)}]\n")
        except AgentFSMError as error:  # e.g. another worker runs this chat: say so, go on
            _say(f"\n[error: {_one_line(str(error))}]\n")
        finally:
            self.running = False

    async def _stream(
        self, agent: AsyncOpenAIStreamingAgent, text: str, keep: bool
    ) -> AgentResponse | None:
        """Stream one answer to the terminal; its response (``None`` if the stream had none)."""
        from agentfsm.hooks import FinalResponseEvent, TokenEvent, ToolCallEvent, ToolResultEvent

        stream = agent.stream_message(
            text,
            user_id=self.user_id,
            chat_id=self.chat_id,
            conversation=self.conversation if keep else None,
        )
        streamed = False
        response = None
        async with contextlib.aclosing(stream):
            async for event in stream:
                if isinstance(event, TokenEvent):
                    streamed = True
                    _say(event.delta)
                elif isinstance(event, ToolCallEvent):
                    _say(f"\n  → {event.call.name}({_clip(event.call.arguments, 200)})")
                    streamed = True
                elif isinstance(event, ToolResultEvent):
                    mark = "✗" if event.is_error else "←"
                    _say(f"\n  {mark} {event.tool_name}: {_clip(event.content, 200)}\n")
                elif isinstance(event, FinalResponseEvent):
                    response = event.response
                    if not streamed and response.output:
                        _say(response.output)
        return response

    def _on_sigint(self) -> None:
        if self.running:
            _say("\n[stopping…]")
            self.agent.request_stop(self.chat_id)
        else:
            self.inbox.put_nowait(_INTERRUPT)

    def _read_stdin(self, loop: asyncio.AbstractEventLoop) -> None:
        """Runs in a daemon thread: raw reads hold no lock a closing interpreter would need."""
        buffered = b""
        fd = sys.stdin.fileno()
        while True:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                if buffered:
                    self._post(loop, buffered.decode(errors="replace"))
                self._post(loop, _EOF)
                return
            buffered += chunk
            while b"\n" in buffered:
                line, _, buffered = buffered.partition(b"\n")
                self._post(loop, line.decode(errors="replace"))

    def _post(self, loop: asyncio.AbstractEventLoop, item: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: the chat is over
            loop.call_soon_threadsafe(self.inbox.put_nowait, item)


@contextlib.contextmanager
def _sigint_handler(loop: asyncio.AbstractEventLoop, handler: Callable[[], None]) -> Iterator[None]:
    """Ctrl-C calls ``handler`` on the loop instead of raising ``KeyboardInterrupt``."""
    try:
        loop.add_signal_handler(signal.SIGINT, handler)
    except (NotImplementedError, RuntimeError):  # Windows: a plain handler, sent to the loop
        previous = signal.signal(signal.SIGINT, lambda *_: loop.call_soon_threadsafe(handler))
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGINT)


def _streaming_agent() -> type[AsyncOpenAIStreamingAgent]:
    from agentfsm.agents import AsyncOpenAIStreamingAgent

    return AsyncOpenAIStreamingAgent


def _show_tools(conversation: Conversation) -> None:
    """The tool calls and results of a run that did not stream, as a stream shows them."""
    from agentfsm.messages import AssistantMessage, ToolMessage

    for message in conversation.run_messages:
        if isinstance(message, AssistantMessage):
            for call in message.tool_calls:
                _say(f"\n  → {call.name}({_clip(call.arguments, 200)})")
        elif isinstance(message, ToolMessage):
            mark = "✗" if message.is_error else "←"
            _say(f"\n  {mark} {message.tool_name or message.tool_call_id}: ")
            _say(f"{_clip(message.content, 200)}\n")


def _say(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
