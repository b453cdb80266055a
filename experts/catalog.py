"""The expert catalog: one typed description of every expert, shared by serving, routing and rewards.

Each expert names its backend (how to generate text) and the figures strategies and rewards use to trade off
quality, cost, latency and carbon. The same catalog drives the Serve graph, offline training and the learner.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from experts.energy_model import JOULES_PER_KWH, EnergyModelSpec, estimate_energy
from experts.replica_settings import ReplicaSettings

# Serve's cap on concurrent calls per expert replica when the YAML sets none (the backends queue or batch inside).
EXPERT_MAX_ONGOING_REQUESTS = 64


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TransformersBackendConfig(_Strict):
    """Real generation with Hugging Face transformers (CPU or GPU)."""

    kind: Literal["transformers"] = "transformers"
    model: str = Field(description="Hub id, local directory, or 'packaged:<name>' (see experts.packaged_models).")
    device: str = Field("auto", description="'auto' picks cuda when available, else cpu.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="'auto' is float32 on CPU and bfloat16 on GPU."
    )
    max_input_tokens: int = Field(1024, gt=0, description="Longer prompts keep their end.")
    torch_threads: int | None = Field(None, gt=0, description="torch intra-op threads for CPU replicas.")


class VLLMBackendConfig(_Strict):
    """vLLM's async engine on GPUs. `engine_module` swaps the engine (tests use experts.fake_vllm)."""

    kind: Literal["vllm"] = "vllm"
    model: str = Field(description="Hub id or local directory of the model vLLM serves.")
    engine_module: str = Field(
        "vllm",
        description="Module exposing AsyncEngineArgs, AsyncLLMEngine and SamplingParams. 'vllm' in production; "
        "'experts.fake_vllm' runs the same wiring on CPU without vLLM.",
    )
    tensor_parallel_size: int = Field(1, ge=1)
    max_model_len: int | None = Field(None, gt=0)
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    dtype: str = "auto"
    engine_kwargs: dict = Field(default_factory=dict, description="Extra AsyncEngineArgs fields.")


class OpenAIBackendConfig(_Strict):
    """Any OpenAI-compatible HTTP endpoint (a vLLM server elsewhere, a hosted API)."""

    kind: Literal["openai"] = "openai"
    model: str = Field(description="Model name sent to the endpoint.")
    base_url: str = Field(description="Base URL up to and including /v1.")
    api_key_env: str | None = Field(None, description="Environment variable holding the API key.")
    timeout_s: float = Field(60.0, gt=0)


class ReplayBackendConfig(_Strict):
    """Answers with the recorded response of a RouterBench-format table, for offline evaluation over HTTP."""

    kind: Literal["replay"] = "replay"
    data: str = Field(description="RouterBench CSV file or a directory of them.")
    model: str = Field(description="Column (model name) in the table whose outcomes this expert replays.")


BackendConfig = Annotated[
    TransformersBackendConfig | VLLMBackendConfig | OpenAIBackendConfig | ReplayBackendConfig,
    Field(discriminator="kind"),
]


class ExpertSpec(ReplicaSettings):
    """One expert: how it generates, what it costs, how good and green it is expected to be, and its replicas."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Identifier used in requests and metrics.")
    backend: BackendConfig
    params_b: float = Field(gt=0, description="Parameter count in billions.")
    price_in_per_1k: float = Field(ge=0, description="USD per 1,000 input tokens.")
    price_out_per_1k: float = Field(ge=0, description="USD per 1,000 output tokens.")
    energy_per_token_j: float | None = Field(
        None, ge=0, description="Joules per processed token; unset: computed by the energy model from `energy`."
    )
    energy: EnergyModelSpec | None = Field(
        None, description="Hardware and precision the energy model computes energy_per_token_j from."
    )
    expected_latency_s: float = Field(gt=0, description="Typical end-to-end latency of one answer.")
    quality_prior: float = Field(ge=0, le=1, description="Prior answer quality in [0, 1].")
    max_new_tokens: int = Field(256, gt=0, description="Default cap on generated tokens.")
    temperature: float = Field(0.7, ge=0, le=2, description="Temperature when a request sets none; 0 is greedy.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass when a request sets none.")
    num_gpus: float = Field(0.0, ge=0, description="GPUs per replica (1 for a vLLM expert).")
    trained_as: str | None = Field(
        None,
        description="Outcome-table column (e.g. 'meta/llama-2-70b-chat') whose trained scores this expert takes "
        "in a checkpoint; default: the column a replay backend replays, else the expert's name.",
    )

    energy_from_model: bool = Field(
        False, description="Set by validation: whether energy_per_token_j came from the energy model."
    )

    @model_validator(mode="after")
    def _energy_per_token(self) -> ExpertSpec:
        """energy_per_token_j as set by hand, else from the energy model (experts.energy_model)."""
        if self.energy_per_token_j is not None and not self.energy_from_model:
            return self
        if self.energy is None:
            raise ValueError(
                f"expert {self.name!r}: give energy_per_token_j, or `energy: {{hardware: ...}}` for the energy model"
            )
        self.energy_per_token_j = estimate_energy(self.params_b, self.energy).j_per_token
        self.energy_from_model = True
        return self

    @property
    def modelled_j_per_token(self) -> float | None:
        """What the energy model gives for this expert (None without an `energy` section)."""
        return estimate_energy(self.params_b, self.energy).j_per_token if self.energy is not None else None

    @property
    def column(self) -> str:
        """The outcome-table column this expert stands for in a trained checkpoint (see `trained_as`)."""
        if self.trained_as:
            return self.trained_as
        return self.backend.model if self.backend.kind == "replay" else self.name

    @property
    def deployment_name(self) -> str:
        """`expert_<name>`: one deployment per expert."""
        return f"expert_{self.name}"

    def default_max_ongoing_requests(self) -> int:
        """EXPERT_MAX_ONGOING_REQUESTS."""
        return EXPERT_MAX_ONGOING_REQUESTS


class ExpertCatalog(_Strict):
    """Ordered experts plus the grid's carbon intensity; the order fixes each strategy's output index."""

    experts: list[ExpertSpec] = Field(min_length=1)
    carbon_intensity_g_per_kwh: float = Field(
        400.0, gt=0, description="Grid carbon intensity used to turn energy into gCO2eq."
    )

    @model_validator(mode="after")
    def _unique_names(self) -> ExpertCatalog:
        names = [e.name for e in self.experts]
        if len(set(names)) != len(names):
            raise ValueError(f"expert names must be unique, got {names}")
        return self

    @property
    def names(self) -> list[str]:
        """Expert names in catalog order."""
        return [e.name for e in self.experts]

    @property
    def columns(self) -> list[str]:
        """Each expert's outcome-table column in catalog order (what a checkpoint was trained on)."""
        return [e.column for e in self.experts]

    def __len__(self) -> int:
        return len(self.experts)

    def get(self, name: str) -> ExpertSpec:
        """The expert called `name`; KeyError listing the available ones otherwise."""
        for expert in self.experts:
            if expert.name == name:
                return expert
        raise KeyError(f"Unknown expert {name!r}. Available experts are {self.names}")

    def index(self, name: str) -> int:
        """Position of `name` in catalog order (a strategy's output index)."""
        return self.names.index(self.get(name).name)

    def cost_usd(self, name: str, tokens_in: int, tokens_out: int) -> float:
        """Price of one call from per-token prices."""
        e = self.get(name)
        return (tokens_in * e.price_in_per_1k + tokens_out * e.price_out_per_1k) / 1000.0

    def carbon_g(self, name: str, tokens_in: int, tokens_out: int) -> float:
        """Estimated gCO2eq of one call: energy per token times tokens times grid intensity."""
        joules = self.get(name).energy_per_token_j * (tokens_in + tokens_out)
        return joules / JOULES_PER_KWH * self.carbon_intensity_g_per_kwh
