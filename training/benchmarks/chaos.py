"""The faults `routerllm bench-load` injects: SIGKILL, by pid, of a router replica, an expert replica or the learner
actor of the graph it started, and the wait for their replacement.

A process is found by its Ray process title (`ray::ServeReplica:<app>:<deployment>`, `ray::LearnerActor`) among
the descendants of the graph's own process (read from /proc), so no other Ray session on the machine is touched.
The learner's pid is the one its `/v1/learner/status` reports.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

KILL_ORDER = ("router", "expert", "learner")


@dataclass
class Kill:
    """One injected fault and what followed it (seconds are since the bench started)."""

    role: str
    target: str
    """The deployment (router, expert_<name>) or the learner actor."""
    pid: int
    at: float
    replaced_s: float | None = None
    """Seconds from the kill until a replacement ran: a new replica process, or the learner answering its status."""
    new_pid: int | None = None
    recovery_s: float | None = None
    """Seconds from the kill until the send time of the last request it hurt (load.recovery)."""
    hurt_requests: int | None = None


def _processes() -> dict[int, tuple[int, str]]:
    """{pid: (parent pid, command line)} of every process readable in /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state, past the (comm)
        table[int(entry.name)] = (ppid, cmdline)
    return table


def descendants_titled(root_pid: int, title: str) -> list[int]:
    """Pids below `root_pid` whose command line (Ray's process title) starts with `title`, oldest first."""
    table = _processes()
    below, frontier = set(), [root_pid]
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    while frontier:
        for child in children.get(frontier.pop(), []):
            if child not in below:
                below.add(child)
                frontier.append(child)
    return sorted(pid for pid in below if table[pid][1].startswith(title))


def replica_title(deployment: str, app: str = "default") -> str:
    """Ray's process title of a Serve replica (the app `python -m serve_app run` deploys is 'default')."""
    return f"ray::ServeReplica:{app}:{deployment}"


async def busiest_expert(url: str) -> str:
    """The deployment of the expert that has answered most calls (killing it forces failover)."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        experts = (await client.get("/v1/experts")).json()["experts"]
    best = max(experts, key=lambda e: (e.get("stats") or {}).get("calls", 0))
    return f"expert_{best['name']}"


async def learner_pid(url: str) -> int | None:
    """The learner actor's pid from /v1/learner/status, None while it does not answer."""
    try:
        async with httpx.AsyncClient(base_url=url, timeout=5) as client:
            r = await client.get("/v1/learner/status")
    except httpx.HTTPError:
        return None
    return r.json()["actor"]["pid"] if r.status_code == 200 else None


async def kill_role(role: str, root_pid: int, url: str, now: Callable[[], float], app: str = "default") -> Kill:
    """SIGKILL one process of `role` (router: the first router replica; expert: the busiest expert's replica;
    learner: the learner actor) of the Serve application `app`."""
    if role == "learner":
        target, pid = "routerllm-learner", await learner_pid(url)
    else:
        target = "router" if role == "router" else await busiest_expert(url)
        pids = descendants_titled(root_pid, replica_title(target, app))
        pid = pids[0] if pids else None
    if pid is None:
        raise RuntimeError(f"no {role} process ({target}) found under pid {root_pid}")
    os.kill(pid, signal.SIGKILL)
    kill = Kill(role=role, target=target, pid=pid, at=now())
    print(f"  killed {role} {target} (pid {pid}) at {kill.at:.1f} s")
    return kill


async def wait_replaced(kill: Kill, root_pid: int, url: str, now: Callable[[], float], timeout_s: float = 300) -> None:
    """Fill kill.replaced_s and kill.new_pid once a new process of the role runs (for the learner: answers)."""
    while now() - kill.at < timeout_s:
        if kill.role == "learner":
            pid = await learner_pid(url)
            new = pid if pid not in (None, kill.pid) else None
        else:
            fresh = [p for p in descendants_titled(root_pid, replica_title(kill.target)) if p != kill.pid]
            new = fresh[-1] if fresh and (kill.role != "router" or len(fresh) >= 2) else None
        if new is not None:
            kill.new_pid, kill.replaced_s = new, round(now() - kill.at, 2)
            print(f"  {kill.role} {kill.target} replaced by pid {new} after {kill.replaced_s} s")
            return
        await asyncio.sleep(0.5)
