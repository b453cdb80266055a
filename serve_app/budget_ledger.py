"""The budget ledger: carbon (gCO2eq) and cost (USD) spent over a rolling window, globally and per caller.

One instance runs as a named Ray actor (`routerllm-budgets`) shared by every ingress replica. Its methods run one
at a time (a plain, synchronous actor), so each is atomic. Requests go through it reserve-then-settle:

    reserve(request, caller, options)  before calling an expert: the first option (the decision's fan-out, then
                                        single experts by score) whose *predicted* charge fits what is left in
                                        every scope is reserved; none fits: the greenest option when the policy
                                        says so, else refused with the seconds until enough spend rolls off
    settle(request, charges)            after the answer: the actual figures are charged, the reservation dropped
    release(request)                    the call failed: the reservation is dropped, nothing charged

Reservations count as spent while they are open, so racing requests cannot all pass on the same budget; a budget
is overspent only by what a settled charge exceeds its reservation by (at most one request's worth, since each
expert's reservations are scaled by the largest actual/predicted ratio it has shown). Open reservations expire
after `reservation_ttl_s` (an ingress that died mid-request).

Plain Python (pydantic types in and out): serve_app.budgets wraps it in the actor and calls it from the ingress.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DIMENSIONS = ("carbon_g", "cost_usd")
TOTAL = "total"
# How many recent actual/predicted ratios of an expert scale its next reservations.
RATIO_MEMORY = 50


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BudgetLimits(_Strict):
    """Limits over the window for one scope; an unset limit is no limit."""

    carbon_g: float | None = Field(None, gt=0, description="gCO2eq allowed per window.")
    cost_usd: float | None = Field(None, gt=0, description="USD allowed per window.")

    def limit(self, dimension: str) -> float | None:
        """The limit on `dimension` ('carbon_g' or 'cost_usd')."""
        return getattr(self, dimension)


class BudgetLine(_Strict):
    """One limited figure of one scope: what the window allows, has spent, holds reserved, and has left."""

    scope: Literal["total", "caller"]
    dimension: Literal["carbon_g", "cost_usd"]
    limit: float
    spent: float
    reserved: float
    left: float
    left_fraction: float


class BudgetState(_Strict):
    """Every limited figure that applies to one caller, now."""

    window_s: float
    caller: str | None
    lines: list[BudgetLine]

    def left_fraction(self, dimension: str) -> float:
        """The tightest fraction left of `dimension` across scopes (1.0: no limit on it)."""
        return min((line.left_fraction for line in self.lines if line.dimension == dimension), default=1.0)


class Option(_Strict):
    """Experts to call together and what calling them is predicted to charge."""

    experts: list[str] = Field(min_length=1)
    carbon_g: float = Field(ge=0)
    cost_usd: float = Field(ge=0)


class Reservation(_Strict):
    """What `reserve` decided."""

    status: Literal["reserved", "downgraded", "over_budget", "refused"]
    experts: list[str]
    """The experts to call (empty when refused)."""
    retry_after_s: float | None = None
    exhausted: list[str] = Field(default_factory=list)
    """'<scope> <dimension>' of every line the first option did not fit."""
    state: BudgetState


@dataclass
class _Open:
    scopes: list[str]
    carbon_g: float
    cost_usd: float
    predicted: dict[str, tuple[float, float]]
    created: float


class BudgetLedger:
    """See the module docstring. `clock`: wall time in seconds (tests pass their own)."""

    def __init__(
        self,
        total: BudgetLimits,
        per_caller: BudgetLimits,
        window_s: float,
        reservation_ttl_s: float = 600.0,
        clock: Callable[[], float] = time.time,
    ):
        self.configure(total, per_caller, window_s, reservation_ttl_s)
        self.clock = clock
        self._charges: dict[str, deque[tuple[float, float, float]]] = {}
        self._open: dict[str, _Open] = {}
        self._ratios: dict[str, deque[float]] = {}

    def configure(
        self, total: BudgetLimits, per_caller: BudgetLimits, window_s: float, reservation_ttl_s: float = 600.0
    ) -> None:
        """Set the limits (a redeployed graph with new limits keeps what was spent)."""
        if not (math.isfinite(window_s) and window_s > 0):
            raise ValueError(f"window_s must be a positive number of seconds, got {window_s!r}")
        self.total, self.per_caller = BudgetLimits.model_validate(total), BudgetLimits.model_validate(per_caller)
        self.window_s, self.reservation_ttl_s = float(window_s), float(reservation_ttl_s)

    # --- the three steps of a request -------------------------------------------------------------------
    def reserve(self, request_id: str, caller: str | None, options: list[Option], greenest: bool) -> Reservation:
        """Reserve the first option that fits; see the module docstring."""
        if not options:
            raise ValueError("reserve needs at least one option")
        now = self._tidy()
        scopes = self._scopes(caller)
        scaled = [self._scaled(Option.model_validate(o)) for o in options]
        exhausted = self._blocking(scopes, scaled[0])
        for i, option in enumerate(scaled):
            if not self._blocking(scopes, option):
                self._hold(request_id, scopes, option, now)
                status = "reserved" if i == 0 else "downgraded"
                return Reservation(status=status, experts=option.experts, exhausted=exhausted, state=self.state(caller))
        green = min(scaled, key=lambda o: (o.carbon_g, o.cost_usd))
        if greenest:
            self._hold(request_id, scopes, green, now)
            return Reservation(
                status="over_budget", experts=green.experts, exhausted=exhausted, state=self.state(caller)
            )
        wait = self._retry_after(scopes, green, now)
        return Reservation(
            status="refused", experts=[], retry_after_s=wait, exhausted=exhausted, state=self.state(caller)
        )

    def settle(self, request_id: str, caller: str | None, charges: dict[str, tuple[float, float]]) -> BudgetState:
        """Charge each answered expert's actual (carbon_g, cost_usd) and drop the reservation."""
        now = self._tidy()
        held = self._open.pop(request_id, None)
        for scope in held.scopes if held else self._scopes(caller):
            log = self._charges.setdefault(scope, deque())
            for carbon, cost in charges.values():
                log.append((now, float(carbon), float(cost)))
        if held:
            for expert, (carbon, _cost) in charges.items():
                predicted = held.predicted.get(expert, (0.0, 0.0))[0]
                if predicted > 0:
                    self._ratios.setdefault(expert, deque(maxlen=RATIO_MEMORY)).append(carbon / predicted)
        return self.state(caller)

    def release(self, request_id: str) -> bool:
        """Drop a reservation without charging (the call failed); False if it was not open."""
        return self._open.pop(request_id, None) is not None

    def state(self, caller: str | None) -> BudgetState:
        """The lines that apply to `caller` now."""
        self._tidy()
        lines = []
        for scope in self._scopes(caller):
            limits = self.total if scope == TOTAL else self.per_caller
            spent, reserved = self._spent(scope), self._reserved(scope)
            for i, dim in enumerate(DIMENSIONS):
                limit = limits.limit(dim)
                if limit is None:
                    continue
                left = limit - spent[i] - reserved[i]
                lines.append(
                    BudgetLine(
                        scope="total" if scope == TOTAL else "caller",
                        dimension=dim,
                        limit=limit,
                        spent=spent[i],
                        reserved=reserved[i],
                        left=left,
                        left_fraction=min(max(left / limit, 0.0), 1.0),
                    )
                )
        return BudgetState(window_s=self.window_s, caller=caller, lines=lines)

    # --- internals ----------------------------------------------------------------------------------------
    def _scopes(self, caller: str | None) -> list[str]:
        return [TOTAL] if caller is None else [TOTAL, f"caller:{caller}"]

    def _limits(self, scope: str) -> BudgetLimits:
        return self.total if scope == TOTAL else self.per_caller

    def _tidy(self) -> float:
        """Drop charges older than the window and reservations older than their TTL; returns now."""
        now = self.clock()
        for log in self._charges.values():
            while log and log[0][0] <= now - self.window_s:
                log.popleft()
        for rid in [r for r, o in self._open.items() if now - o.created > self.reservation_ttl_s]:
            del self._open[rid]
        return now

    def _spent(self, scope: str) -> tuple[float, float]:
        log = self._charges.get(scope, ())
        return sum(c[1] for c in log), sum(c[2] for c in log)

    def _reserved(self, scope: str) -> tuple[float, float]:
        held = [o for o in self._open.values() if scope in o.scopes]
        return sum(o.carbon_g for o in held), sum(o.cost_usd for o in held)

    def _scaled(self, option: Option) -> Option:
        """The option's prediction scaled up by the largest actual/predicted ratio its experts have shown."""
        factor = max([1.0, *(max(self._ratios.get(e, [1.0])) for e in option.experts)])
        return option.model_copy(update={"carbon_g": option.carbon_g * factor, "cost_usd": option.cost_usd * factor})

    def _blocking(self, scopes: list[str], option: Option) -> list[str]:
        """'<scope> <dimension>' of every line `option` does not fit in."""
        blocked = []
        for scope in scopes:
            spent, reserved = self._spent(scope), self._reserved(scope)
            for i, dim in enumerate(DIMENSIONS):
                limit = self._limits(scope).limit(dim)
                if limit is not None and spent[i] + reserved[i] + getattr(option, dim) > limit:
                    blocked.append(f"{scope.split(':')[0]} {dim}")
        return blocked

    def _hold(self, request_id: str, scopes: list[str], option: Option, now: float) -> None:
        share = len(option.experts)
        predicted = {e: (option.carbon_g / share, option.cost_usd / share) for e in option.experts}
        self._open[request_id] = _Open(scopes, option.carbon_g, option.cost_usd, predicted, now)

    def _retry_after(self, scopes: list[str], option: Option, now: float) -> float:
        """Seconds until `option` fits as spend rolls off the window (the window itself when reservations block)."""
        wait = 0.0
        for scope in scopes:
            spent, reserved = self._spent(scope), self._reserved(scope)
            for i, dim in enumerate(DIMENSIONS):
                limit = self._limits(scope).limit(dim)
                if limit is None:
                    continue
                need = spent[i] + reserved[i] + getattr(option, dim) - limit
                wait = max(wait, self._until_freed(scope, i + 1, need, now))
        return max(wait, 1.0)

    def _until_freed(self, scope: str, column: int, need: float, now: float) -> float:
        if need <= 0:
            return 0.0
        freed = 0.0
        for charge in self._charges.get(scope, ()):
            freed += charge[column]
            if freed >= need:
                return charge[0] + self.window_s - now
        return self.window_s
