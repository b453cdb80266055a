"""Budgets on the request path: who the caller is, what routing sees of the budget, and the reserve / settle /
release calls to the shared ledger actor (serve_app.budget_ledger) around each expert call.

Steering: the carbon weight is scaled by the grid's intensity now over its mean (`carbon.follow_grid`), and as a
budget drains, each request's carbon (cost) weight rises by `steer_carbon_weight`
(`steer_cost_weight`) x pressure, pressure = clip(1 - left_fraction / tight_fraction, 0, 1), so greener and cheaper
experts win under every strategy; the fractions left also fill the strategy's RouteContext (carbon_budget_left is
the tighter of the server's and the client's `router.carbon_budget_left`). The ingress only calls this module.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from router_deployments.objectives import ObjectiveWeights
from serve_app.budget_ledger import BudgetLedger, BudgetLine, BudgetState, Option, Reservation
from serve_app.config import AppConfig, BudgetConfig
from serve_app.errors import APIError, short_error
from serve_app.routed_request import ExpertAnswer, RoutedRequest
from serve_app.shared_actors import shared_actor

logger = logging.getLogger("routerllm.ingress")

MAX_CALLER_CHARS = 256
LEDGER_TIMEOUT_S = 5.0


def caller_of(body: Any, key_id: str | None = None) -> str | None:
    """Whom a request's spend is charged to: its API key's fingerprint (serve_app.auth) where the graph asks for
    keys, else the OpenAI `user` field, else None (the total budget only)."""
    if key_id is not None:
        return f"key:{key_id}"
    user = (getattr(body, "model_extra", None) or {}).get("user")
    if user is None:
        return None
    if not isinstance(user, str) or not user.strip() or len(user) > MAX_CALLER_CHARS:
        raise APIError(400, f"user must be a non-empty string of at most {MAX_CALLER_CHARS} characters", param="user")
    return user.strip()


def pressure(left_fraction: float, tight_fraction: float) -> float:
    """0 with more than `tight_fraction` of the budget left, rising linearly to 1 when it is spent."""
    return min(max(1.0 - left_fraction / tight_fraction, 0.0), 1.0)


class BudgetMetadata(BaseModel):
    """The `budget` object of every response's routing metadata."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["unlimited", "ok", "reserved", "downgraded", "over_budget"]
    """unlimited: no limit set; ok: state read (nothing reserved: /v1/route); reserved: the decision fit;
    downgraded: the next affordable expert was called; over_budget: nothing fit, the greenest was called."""
    caller: str | None
    carbon_left_fraction: float
    cost_left_fraction: float
    grid_intensity_g_per_kwh: float
    window_s: float | None = None
    lines: list[BudgetLine] = []
    downgraded_from: list[str] | None = None


@dataclass
class BudgetView:
    """What routing sees of the budgets for one request."""

    settings: BudgetConfig
    state: BudgetState | None
    caller: str | None
    client_carbon_left: float
    grid_intensity: float
    grid_scale: float = 1.0
    """The grid's intensity now over its mean when carbon.follow_grid is on (1.0: off, or a constant grid)."""

    @property
    def carbon_left(self) -> float:
        """The tighter of the server's carbon fraction left and the client's own."""
        server = self.state.left_fraction("carbon_g") if self.state else 1.0
        return min(server, self.client_carbon_left)

    @property
    def cost_left(self) -> float:
        return self.state.left_fraction("cost_usd") if self.state else 1.0

    def steered(self, weights: ObjectiveWeights) -> ObjectiveWeights:
        """The request's weights with carbon scaled by the grid and carbon and cost raised by the budgets' pressure
        (see the module doc)."""
        s = self.settings
        carbon = weights.carbon * self.grid_scale + s.steer_carbon_weight * pressure(self.carbon_left, s.tight_fraction)
        cost = weights.cost + s.steer_cost_weight * pressure(self.cost_left, s.tight_fraction)
        return weights.model_copy(update={"carbon": carbon, "cost": cost})

    def route_fields(self) -> dict[str, float]:
        """The RouteContext budget fields (a rolling window never ends: window_left stays 1)."""
        return {
            "carbon_budget_left": self.carbon_left,
            "cost_budget_left": self.cost_left,
            "window_left": 1.0,
            "grid_intensity": self.grid_intensity,
        }

    def metadata(self, status: str | None = None, downgraded_from: list[str] | None = None) -> BudgetMetadata:
        limited = self.state is not None
        return BudgetMetadata(
            status=status or ("ok" if limited else "unlimited"),
            caller=self.caller,
            carbon_left_fraction=self.carbon_left,
            cost_left_fraction=self.cost_left,
            grid_intensity_g_per_kwh=self.grid_intensity,
            window_s=self.settings.window_s if limited else None,
            lines=self.state.lines if limited else [],
            downgraded_from=downgraded_from,
        )


class BudgetExceededError(APIError):
    """429 budget_exceeded, with Retry-After."""

    def __init__(self, reservation: Reservation):
        retry = max(1, math.ceil(reservation.retry_after_s or 1.0))
        spent = ", ".join(reservation.exhausted) or "the budget"
        super().__init__(
            429,
            f"budget exceeded ({spent}): no expert's predicted charge fits what is left; retry in {retry} s",
            "rate_limit_error",
            code="budget_exceeded",
        )
        self.retry_after = retry

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        return super().response({"retry-after": str(self.retry_after), **(headers or {})})


class BudgetGate:
    """The ingress's side of budgets: reads state (cached `state_ttl_s` per caller), reserves, settles."""

    def __init__(self, config: AppConfig):
        self.settings = config.budgets
        self.catalog = config.catalog
        self.grid = config.carbon.grid()
        self.follow_grid = config.carbon.follow_grid
        self.ledger = get_or_create_ledger(self.settings) if self.settings.limited else None
        self._cache: dict[str | None, tuple[float, BudgetState]] = {}

    async def start(self) -> None:
        """Give the shared ledger this graph's limits (it keeps what was spent)."""
        if self.ledger is not None:
            s = self.settings
            await self.ledger.configure.remote(s.total, s.per_caller, s.window_s, s.reservation_ttl_s)

    async def view(self, caller: str | None, client_carbon_left: float = 1.0) -> BudgetView:
        """The budget state routing sees for `caller` now."""
        state = None
        if self.ledger is not None:
            cached = self._cache.get(caller)
            if cached and time.monotonic() - cached[0] < self.settings.state_ttl_s:
                state = cached[1]
            else:
                state = self._remember(caller, await self._ask(self.ledger.state.remote(caller)))
        grid = self.grid.at(time.time())
        scale = grid / self.grid.constant if self.follow_grid else 1.0
        return BudgetView(self.settings, state, caller, client_carbon_left, grid, scale)

    async def _ask(self, ref: Any) -> Any:
        """A ledger call; a slow or restarting ledger is a 503 (a budget that cannot be checked is not spent)."""
        try:
            return await asyncio.wait_for(ref, LEDGER_TIMEOUT_S)
        except Exception as e:  # noqa: BLE001 - Ray's errors and the timeout alike
            raise APIError(
                503, f"budget ledger unavailable; retry: {short_error(e)}", "server_error", code="budget_unavailable"
            ) from e

    def _remember(self, caller: str | None, state: BudgetState) -> BudgetState:
        self._cache[caller] = (time.monotonic(), state)
        return state

    def options(self, routed: RoutedRequest, candidates: list[str], prompt_chars: int, max_tokens: int | None):
        """The decision's fan-out, then each candidate alone in order, with their predicted charges."""
        tokens_in = math.ceil(prompt_chars / self.settings.chars_per_token)
        grid_scale = routed.budget.grid_intensity / self.catalog.carbon_intensity_g_per_kwh

        def charge(experts: list[str]) -> Option:
            carbon = cost = 0.0
            for name in experts:
                cap = self.catalog.get(name).max_new_tokens
                out = min(max_tokens or cap, cap)
                carbon += self.catalog.carbon_g(name, tokens_in, out) * grid_scale
                cost += self.catalog.cost_usd(name, tokens_in, out)
            return Option(experts=experts, carbon_g=carbon, cost_usd=cost)

        fanout = list(routed.decision.fanout)
        singles = [[name] for name in candidates if [name] != fanout]
        return [charge(fanout), *(charge(s) for s in singles)]

    async def admit(self, routed: RoutedRequest, candidates: list[str], prompt_chars: int, max_tokens: int | None):
        """Reserve before the expert is called; a downgrade replaces the decision's fan-out, a refusal raises the
        429. Returns the reservation (None when no limit is set)."""
        view = routed.budget
        if self.ledger is None or view is None:
            return None
        options = self.options(routed, candidates, prompt_chars, max_tokens)
        greenest = self.settings.on_exhausted == "greenest"
        ref = self.ledger.reserve.remote(routed.request_id, view.caller, options, greenest)
        reservation: Reservation = await self._ask(ref)
        view.state = self._remember(view.caller, reservation.state)
        if reservation.status == "refused":
            raise BudgetExceededError(reservation)
        decision = routed.decision
        moved = reservation.experts != list(decision.fanout)
        if moved:
            routed.decision = dataclasses.replace(decision, expert=reservation.experts[0], fanout=reservation.experts)
        routed.budget_status = reservation.status
        routed.downgraded_from = list(decision.fanout) if moved else None
        return reservation

    async def settle(self, routed: RoutedRequest, answers: list[ExpertAnswer]) -> None:
        """Charge what the answers cost (updates the state the metadata shows); never fails a request."""
        if self.ledger is None or routed.budget is None:
            return
        charges = {a.expert: (a.carbon_g, a.cost_usd) for a in answers}
        try:
            state = await self.ledger.settle.remote(routed.request_id, routed.budget.caller, charges)
            routed.budget.state = self._remember(routed.budget.caller, state)
        except Exception as e:  # noqa: BLE001 - the answer goes out; the reservation expires on its own
            logger.warning("could not settle the budget of %s: %r", routed.request_id, e)

    def release(self, routed: RoutedRequest) -> None:
        """Drop the request's reservation (its call failed or the client left); fire and forget."""
        if self.ledger is not None:
            self.ledger.release.remote(routed.request_id)


def get_or_create_ledger(settings: BudgetConfig):
    """The named, detached ledger actor every ingress replica shares (created on first call)."""
    return shared_actor(
        BudgetLedger,
        settings.actor_name,
        settings.namespace,
        settings.total,
        settings.per_caller,
        settings.window_s,
        settings.reservation_ttl_s,
    )
