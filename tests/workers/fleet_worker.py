"""The workers of the fleet in tests/test_many_workers.py, and the fork server starting them.

Run as a script, this is a fork server: it imports everything once, then reads one JSON
config per line on stdin, forks a worker for it and writes the worker's pid on stdout. A
worker started cold spends about 1.2 s of CPU importing agentfsm, openai, redis-py and
psycopg; the test SIGKILLs one about every second on 2 cores, so cold starts would be most
of its load. A forked worker is an ordinary process with a fresh event loop, connections and
lease owner, and dies of SIGKILL like any other. The kernel reaps the workers (``SIGCHLD``
ignored): a worker's pid is gone once it has exited.

A worker serves chats whose ids it takes from a Redis list shared by the fleet, with an
agent on a shared RedisStore or PostgresStore, and recovers the chats of dead workers in the
background. Everything it does that the test checks goes, as one JSON line per event, into
its own log file, written with ``os.write`` on an ``O_APPEND`` descriptor before the work it
records goes on: the kernel keeps a written line when the process is SIGKILLed a moment
later (only a machine crash would need ``fsync``). Its stdout and stderr go to a file of
its own too, which should stay empty.

A chat id taken from the queue moves (``LMOVE``, atomically) to the worker's slot's
in-progress list and leaves it only once its ``send_message`` has ended, so a worker
restarted in the same slot takes up the ids its killed predecessor had taken: those whose
chat is in the store already are left to recovery; the others are sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import signal
import sys
import time
import traceback
from typing import Any

import redis.asyncio

from agentfsm import AgentFSMError, AsyncOpenAISimpleAgent, Phase, ToolContext, tool
from agentfsm.hooks import TransitionEvent
from agentfsm.store import LeaseStore, PostgresStore, RedisStore


class EventLog:
    """Appends JSON lines to this incarnation's log file, each in one ``write``."""

    def __init__(self, path: str, incarnation: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.incarnation = incarnation
        self.pid = os.getpid()

    def write(self, event: str, **fields: Any) -> None:
        line = {"event": event, "inc": self.incarnation, "pid": self.pid, "t": time.time()}
        line.update(fields)
        os.write(self.fd, (json.dumps(line) + "\n").encode())


class LogToEvents(logging.Handler):
    """agentfsm's own log records (claims, lost leases, failed recoveries) into the log."""

    def __init__(self, events: EventLog) -> None:
        super().__init__(logging.INFO)
        self.events = events

    def emit(self, record: logging.LogRecord) -> None:
        fields = getattr(record, "fields", {})
        self.events.write(
            "log",
            level=record.levelname,
            name=getattr(record, "event", record.getMessage()),
            fields={k: str(v) for k, v in fields.items()},
        )


async def main(config: dict[str, Any]) -> None:
    events = EventLog(config["log"], config["incarnation"])
    logging.getLogger("agentfsm").addHandler(LogToEvents(events))
    logging.getLogger("agentfsm").setLevel(logging.INFO)
    rng = random.Random()

    @tool
    async def lookup(topic: str, context: ToolContext) -> str:
        """Looks a topic up (slowly, so that kills land mid-call).

        Args:
            topic: what to look up.
        """
        mark = {"chat": context.chat_id, "call_id": context.call_id, "attempt": context.attempt}
        events.write("call", **mark)
        await asyncio.sleep(rng.uniform(0.02, 0.05))
        result = f"fact about {topic} (attempt {context.attempt}, {events.incarnation})"
        events.write("return", result=result, **mark)
        return result

    def moved(event: TransitionEvent) -> None:
        events.write(
            "moved", chat=event.conversation.chat_id, to=event.to_phase.value, why=event.reason
        )

    store: LeaseStore
    if config["kind"] == "redis":
        store = RedisStore(config["store"], prefix=config["prefix"], lease_ttl=config["lease_ttl"])
    else:
        store = PostgresStore(config["store"], table=config["table"], lease_ttl=config["lease_ttl"])
    agent = AsyncOpenAISimpleAgent(
        model="scripted-model",
        api_key="k",
        base_url=config["base_url"],
        tool_registry=[lookup],
        store=store,
        hooks={"on_transition": moved},
    )
    queue = redis.asyncio.Redis.from_url(config["queue_url"], decode_responses=True)
    taken = f"{config['queue']}:taken:{config['slot']}"
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # blocked until handled
    slots = asyncio.Semaphore(config["concurrency"])
    running: set[asyncio.Task[None]] = set()

    async def serve(chat_id: str) -> None:
        try:
            if await store.load(chat_id) is not None:
                events.write("skipped", chat=chat_id)  # started before: recovery's job
                return
            events.write("send", chat=chat_id)
            response = await agent.send_message(
                f"question {chat_id}", chat_id=chat_id, user_id="fleet"
            )
            phase = response.conversation.phase
            events.write("sent", chat=chat_id, done=phase is Phase.DONE)
        except Exception as error:  # the test reports every one
            events.write(
                "error",
                chat=chat_id,
                type=type(error).__name__,
                ours=isinstance(error, AgentFSMError),
                message=str(error),
            )
        finally:
            await queue.lrem(taken, 1, chat_id)
            slots.release()

    def start(chat_id: str) -> None:
        task = asyncio.ensure_future(serve(chat_id))
        running.add(task)
        task.add_done_callback(running.discard)

    async with agent.recovering(every=config["recover_every"], limit=config["recover_limit"]):
        events.write("ready")
        for chat_id in await queue.lrange(taken, 0, -1):  # a killed predecessor's
            await slots.acquire()
            start(chat_id)
        while not stop.is_set():
            await slots.acquire()
            chat_id = await queue.blmove(config["queue"], taken, 0.1, "LEFT", "RIGHT")
            if chat_id is None:
                slots.release()
                continue
            start(chat_id)
        await asyncio.gather(*running)
    await agent.aclose()
    await store.aclose()  # agent.aclose() leaves the store open
    await queue.aclose()
    events.write("stopped")


def worker(config: dict[str, Any]) -> None:
    """The forked child: run ``main`` with stdio sent to the config's ``err`` file, and exit."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    err = os.open(config["err"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(err, 1)
    os.dup2(err, 2)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    code = 0
    try:
        asyncio.run(main(config))
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def fork_server() -> None:
    """Fork a worker for each config line on stdin, answering with its pid; stop at EOF."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the workers
    # A worker SIGTERMed before it can stop cleanly gets the signal once it can (in main).
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    while line := sys.stdin.readline():
        config = json.loads(line)
        pid = os.fork()
        if pid == 0:
            worker(config)
        sys.stdout.write(f"{pid}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    fork_server()
