"""The typed contract of params.yaml: one pydantic model per section, where every default lives.

These models are THE settings objects: stages validate params.yaml once (daj.params.load_config)
and pass the models, or their sections, to library code, which reads them and re-checks nothing.
Enumerations are the models' Literal types; the tuples below are derived from them.
This module imports nothing of the library.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

Benchmark = Literal["humaneval", "lcb", "bcb"]
Reweight = Literal["none", "domain", "instance_table", "instance_net"]
Objective = Literal["dpo", "kto", "orpo", "grpo"]
EngineBackend = Literal["hf", "vllm", "openai"]
PolicyBackend = Literal["file", "mutants", "hf", "vllm", "openai"]
ExecuteBackend = Literal["auto", "local", "docker"]
VerdictSource = Literal["sandbox", "imported"]
JudgeMode = Literal["reason", "select"]
Precision = Literal["fp32", "bf16"]
GrpoMode = Literal["online", "offline"]
SplitName = Literal["lower", "upper", "test"]

BENCHMARKS: tuple[str, ...] = get_args(Benchmark)
REWEIGHTS: tuple[str, ...] = get_args(Reweight)
OBJECTIVES: tuple[str, ...] = get_args(Objective)
ENGINE_BACKENDS: tuple[str, ...] = get_args(EngineBackend)
POLICY_BACKENDS: tuple[str, ...] = get_args(PolicyBackend)
SPLITS: tuple[str, ...] = get_args(SplitName)


class Section(BaseModel):
    """A params section: unknown keys rejected, no silent coercion (YAML gives real types), finite numbers."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_default=True, allow_inf_nan=False,
                              frozen=True)


Fraction = Annotated[float, Field(gt=0, lt=1)]
Probability = Annotated[float, Field(gt=0, le=1)]
Name = Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]*$")]


def _iso_date(value: Any) -> str:
    """YYYY-MM-DD (a YAML date or a quoted string)."""
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str):
        dt.date.fromisoformat(value)  # ValueError names the problem
        return value
    raise ValueError(f"expected a date YYYY-MM-DD, got {value!r}")


class DataConfig(Section):
    source: str = Field("package", min_length=1)  # package / hf / a local snapshot directory
    lcb_release: str = "release_v6"
    bcb_version: str = "v0.1.4"
    limit: PositiveInt | None = None


class SplitConfig(Section):
    lcb_upper_start: str = "2024-08-01"
    lcb_test_start: str = "2025-02-01"
    lcb_test_end: str = "2025-05-01"
    exclude_platforms: list[str] = Field(default_factory=lambda: ["codeforces"])
    bcb_upper_fraction: Fraction = 0.2
    humaneval_fractions: list[NonNegativeFloat] = Field(default_factory=lambda: [0.6, 0.2, 0.2])

    @field_validator("lcb_upper_start", "lcb_test_start", "lcb_test_end", mode="before")
    @classmethod
    def _dates(cls, v: Any) -> str:
        return _iso_date(v)

    @field_validator("humaneval_fractions")
    @classmethod
    def _three_fractions(cls, v: list[float]) -> list[float]:
        if len(v) != 3 or abs(sum(v) - 1.0) > 1e-6:
            raise ValueError(f"expected three fractions (lower, upper, test) summing to 1, got {v}")
        return v

    @model_validator(mode="after")
    def _ordered(self) -> SplitConfig:
        if not self.lcb_upper_start < self.lcb_test_start < self.lcb_test_end:
            raise ValueError("expected lcb_upper_start < lcb_test_start < lcb_test_end")
        return self

    @property
    def excluded(self) -> set[str]:
        """The excluded platforms, lower case."""
        return {p.lower() for p in self.exclude_platforms}

    def lcb_windows(self) -> dict[str, tuple[str | None, str]]:
        """split -> [start, end) release-date window (start None = open)."""
        return {"lower": (None, self.lcb_upper_start), "upper": (self.lcb_upper_start, self.lcb_test_start),
                "test": (self.lcb_test_start, self.lcb_test_end)}


class Decoding(Section):
    """The paper's decoding settings (policies and judge alike)."""

    temperature: NonNegativeFloat = 0.7
    top_p: Probability = 0.8
    top_k: NonNegativeInt = 20
    repetition_penalty: PositiveFloat = 1.05
    max_new_tokens: PositiveInt = 8192


class SamplingConfig(Decoding):
    """Defaults of every policy; a policy may override each key."""

    n: PositiveInt = 4


class PolicyConfig(BaseModel):
    """One candidate pool. Engine options of a generative backend (base_url, batch_size, ...) are
    extra keys, checked where the engine is built (daj.engines.registry) and before any stage runs."""

    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False, frozen=True)

    name: Name
    backend: PolicyBackend
    n: PositiveInt | None = None
    problems: PositiveInt | None = None      # keep the first N problems
    chunk: PositiveInt | None = None         # problems per resumable chunk (mutants 16, engines 8)
    seed: NonNegativeInt | None = None       # the policy's own seed (default: the global seed)
    path: str | list[str] | None = None      # file: a pool file or a list of them
    model: str | None = None                 # hf / vllm / openai
    adapter: str | None = None
    temperature: NonNegativeFloat | None = None
    top_p: Probability | None = None
    top_k: NonNegativeInt | None = None
    repetition_penalty: PositiveFloat | None = None
    max_new_tokens: PositiveInt | None = None

    @model_validator(mode="after")
    def _backend_options(self) -> PolicyConfig:
        extra = sorted(self.model_extra or {})
        if self.backend == "file":
            if not self.path:
                raise ValueError("a file policy needs 'path' (a pool file or a list of them)")
            unknown = extra + [k for k in ("model", "adapter") if getattr(self, k) is not None]
        elif self.backend == "mutants":
            unknown = extra + [k for k in ("path", "model", "adapter") if getattr(self, k) is not None]
        else:
            if not self.model:
                raise ValueError(f"a {self.backend} policy needs 'model'")
            unknown = ["path"] if self.path is not None else []
        if unknown:
            raise ValueError(f"unknown option(s) {', '.join(unknown)} for a {self.backend} policy")
        return self

    @property
    def engine_options(self) -> dict[str, Any]:
        """The backend options of a generative policy (everything not a policy or sampling key)."""
        return dict(self.model_extra or {})

    def engine_spec(self) -> dict[str, Any]:
        """The spec daj.engines.registry.make_engine builds this policy's engine from."""
        return {"backend": self.backend, "model": self.model, "adapter": self.adapter, **self.engine_options}

    def sampling(self, defaults: SamplingConfig) -> SamplingConfig:
        """The `sampling:` defaults with this policy's own overrides."""
        own = {k: getattr(self, k) for k in SamplingConfig.model_fields if getattr(self, k, None) is not None}
        return defaults.model_copy(update=own)


class ExecuteConfig(Section):
    backend: ExecuteBackend = "auto"
    allow_unsandboxed: bool = False
    verdict_source: VerdictSource = "sandbox"
    timeout_s: PositiveFloat = 6.0
    wall_factor: Annotated[float, Field(ge=1)] = 4.0
    memory_mb: PositiveInt = 2048
    workers: NonNegativeInt = 0
    unittest_memory_mb: PositiveInt = 30720
    output_mb: PositiveInt = 64
    pids_limit: PositiveInt = 128
    sandbox_memory_mb: PositiveInt = 4096
    docker_image: str = "daj-sandbox:latest"
    seccomp: bool = True
    sandbox_cpus: NonNegativeFloat = 1.0   # cgroup CPU quota per sandbox in cores (local; 0 = none)
    retries: NonNegativeInt = 1            # reruns on a fresh server after an infrastructure fault
    # null: this host; auto: the Ray cluster this host belongs to (`ray start`); host:port or ray://host:port
    cluster: str | None = Field(None, pattern=r"^(auto|(ray://)?[A-Za-z0-9_.\-]+:[0-9]+)$")


class RewardConfig(Section):
    """The verifiable reward of a judge response: correct selection, wrong one, format error."""

    correct: float = 1.0
    wrong: float = 0.0
    format_error: float = -1.0

    @model_validator(mode="after")
    def _ordered(self) -> RewardConfig:
        if not self.correct > self.wrong >= self.format_error:
            raise ValueError("expected correct > wrong >= format_error")
        return self


class JudgeConfig(Decoding):
    """Everything that decides the judge's answers (stages depend on the section as a whole):
    the engine, the prompt and the decoding (the paper's defaults, with a tiny reasoning budget)."""

    backend: EngineBackend = "hf"
    model: str = Field("models/tiny", min_length=1)
    adapter: str | None = None
    base_url: str | None = Field(None, min_length=1)     # openai backend only (null = http://127.0.0.1:8000/v1)
    api_key_env: str | None = Field(None, min_length=1)  # openai backend only (null = OPENAI_API_KEY)
    engine_options: dict[str, Any] = Field(default_factory=dict)
    tokenizer: str | None = None
    mode: JudgeMode = "reason"
    max_new_tokens: PositiveInt = 16      # reasoning budget in mode reason (unused in mode select)
    force_selection: bool = True
    force_sampling: bool = True
    max_prompt_chars: PositiveInt = 6000

    @model_validator(mode="after")
    def _server_options(self) -> JudgeConfig:
        if self.backend != "openai" and (self.base_url or self.api_key_env):
            raise ValueError("base_url and api_key_env are options of the openai backend")
        twice = sorted({"base_url", "api_key_env"} & set(self.engine_options))
        if twice:
            raise ValueError(f"{twice[0]} is a judge key; do not repeat it in engine_options")
        return self

    @property
    def selection_only(self) -> bool:
        """Mode select: no generation, the selection drawn from the option log-probabilities."""
        return self.mode == "select"

    @property
    def scores_options(self) -> bool:
        """Responses may be completed from the engine's option scores (needs score_continuations)."""
        return self.selection_only or self.force_selection

    def with_settings(self, settings: dict[str, Any]) -> JudgeConfig:
        """These settings with some replaced (a trajectory model's own), validated again."""
        return type(self).model_validate({**self.model_dump(), **settings})

    def engine_spec(self, adapter: str | None) -> dict[str, Any]:
        """The spec daj.engines.registry.make_engine builds the judge from, with `adapter`."""
        spec: dict[str, Any] = {"backend": self.backend, "model": self.model, "adapter": adapter,
                                **self.engine_options}
        spec.update({k: v for k in ("base_url", "api_key_env") if (v := getattr(self, k)) is not None})
        return spec


class SplitCaps(Section):
    lower: PositiveInt | None = None
    upper: PositiveInt | None = None


# the judge settings a trajectory model may set for itself (the rest come from judge.*)
TRAJECTORY_SETTINGS = ("mode", "temperature", "top_p", "top_k", "repetition_penalty", "max_new_tokens",
                       "force_selection", "force_sampling")


class TrajectoryConfig(BaseModel):
    """A model that writes judge responses for one level of `pairs` (daj.judge.trajectories): any
    engine {name, backend, model, ...engine options}, with judge settings of its own and a seed."""

    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False, frozen=True)

    name: Annotated[str, Field(min_length=1, pattern=r"^[^#/]+$")]
    backend: EngineBackend
    model: str = Field(min_length=1)
    adapter: str | None = None
    seed: NonNegativeInt | None = None   # base seed of its requests (null: the global seed)
    mode: JudgeMode | None = None
    temperature: NonNegativeFloat | None = None
    top_p: Probability | None = None
    top_k: NonNegativeInt | None = None
    repetition_penalty: PositiveFloat | None = None
    max_new_tokens: PositiveInt | None = None
    force_selection: bool | None = None
    force_sampling: bool | None = None

    @field_validator("name")
    @classmethod
    def _not_judge(cls, v: str) -> str:
        if v == "judge":
            raise ValueError("the name 'judge' is reserved for the judge itself (write the item as the string 'judge')")
        return v

    @property
    def settings(self) -> dict[str, Any]:
        """The judge settings it sets itself."""
        return {k: getattr(self, k) for k in TRAJECTORY_SETTINGS if getattr(self, k) is not None}

    def engine_spec(self) -> dict[str, Any]:
        return {"backend": self.backend, "model": self.model, "adapter": self.adapter, **(self.model_extra or {})}


# who writes a level's judge responses: null = the judge; else a list of "judge" and engines
Trajectories = list[Literal["judge"] | TrajectoryConfig] | None


class PairsConfig(Section):
    lower_policies: list[Name] = Field(default_factory=lambda: ["mutants"], min_length=1)
    upper_policies: list[Name] = Field(default_factory=lambda: ["mutants"], min_length=1)
    max_pairs_per_problem: PositiveInt | None = 2
    responses_per_pair: PositiveInt = 2
    lower_trajectories: Trajectories = None
    upper_trajectories: Trajectories = None
    max_problems: PositiveInt | SplitCaps | None = None

    @field_validator("lower_trajectories", "upper_trajectories")
    @classmethod
    def _unique_names(cls, v: Trajectories) -> Trajectories:
        if v is not None:
            if not v:
                raise ValueError("expected null or a non-empty list of 'judge' / {name, backend, model, ...}")
            names = [m if isinstance(m, str) else m.name for m in v]
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"trajectory model name {dup[0]!r} is used twice")
        return v

    def problem_caps(self) -> dict[str, int | None]:
        """split -> the most problems judged there (None = all)."""
        caps = self.max_problems
        if isinstance(caps, SplitCaps):
            return {"lower": caps.lower, "upper": caps.upper}
        return {"lower": caps, "upper": caps}

    def policies(self, split: str) -> list[str]:
        return list(self.lower_policies if split == "lower" else self.upper_policies)

    def trajectories(self, split: str) -> Trajectories:
        return self.lower_trajectories if split == "lower" else self.upper_trajectories


class TrainConfig(Section):
    objective: Objective = "dpo"
    beta: PositiveFloat = 0.1
    grpo_group: Annotated[int, Field(ge=2)] = 4
    grpo_mode: GrpoMode = "online"
    rollout_adapter_dir: str = Field(".cache/rollout_adapters", min_length=1)
    steps: PositiveInt = 12               # lower iterations (micro-batches); optimizer steps = steps / grad_accum
    lr: PositiveFloat = 1.0e-4
    meta_lr: PositiveFloat = 1.0e-2
    grad_accum: PositiveInt = 2
    meta_grad_accum: PositiveInt = 1
    meta_every: PositiveInt = 1
    batch_size: PositiveInt = 1
    max_length: PositiveInt = 1024
    precision: Precision = "fp32"
    lora_r: PositiveInt = 32
    lora_alpha: PositiveInt = 64
    lora_targets: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        min_length=1)
    meta_batch_size: PositiveInt = 1
    darts_alpha: PositiveFloat = 0.01
    grpo_clip: PositiveFloat = 0.2
    grpo_kl: NonNegativeFloat = 0.0
    eval_every: NonNegativeInt = 0
    ckpt_every: NonNegativeInt = 0
    weight_param: Literal["paper", "softmax"] = "paper"  # how weights are parametrised: daj/train/weights.py

    @model_validator(mode="after")
    def _whole_optimizer_steps(self) -> TrainConfig:
        if self.steps % self.grad_accum:
            raise ValueError(f"steps ({self.steps}) counts lower iterations and must be a multiple of "
                             f"grad_accum ({self.grad_accum})")
        return self

    @property
    def optimizer_steps(self) -> int:
        """Lower optimizer steps: `steps` iterations of `grad_accum` micro-batches each."""
        return self.steps // self.grad_accum


BonMethod = Literal["random", "oracle", "first", "public_tests", "judge", "hybrid", "prm", "grm"]
BON_METHODS: tuple[str, ...] = get_args(BonMethod)
JUDGE_METHODS: tuple[str, ...] = ("judge", "hybrid")   # the methods that ask the judge
PrmAggregation = Literal["min", "mean", "last", "prod"]


class PrmConfig(Section):
    """bon method `prm`: a process reward model with a value head (Skywork-o1-Open-PRM style) scores each
    candidate's steps; the steps' rewards are aggregated to one score (daj/eval/reward_models.py)."""

    backend: Literal["hf", "openai"] = "hf"   # hf: loaded here; openai: a server's /embeddings (vLLM + Skywork's plugin)
    model: str = Field("models/tiny", min_length=1)
    tokenizer: str | None = None              # openai backend: the tokenizer that makes the token ids (null = model)
    base_url: str | None = Field(None, min_length=1)     # openai backend only
    api_key_env: str | None = Field(None, min_length=1)  # openai backend only
    random_head_seed: NonNegativeInt | None = 0  # stand-ins only: a seeded random value head (null: the checkpoint's)
    step: str = Field("\n", min_length=1)     # step separator (Skywork: a newline)
    aggregation: PrmAggregation = "min"
    max_prompt_chars: PositiveInt = 6000      # the statement is cut to this many characters (middle truncation)
    max_tokens: PositiveInt = 4096            # longer inputs drop their earliest steps
    batch_size: PositiveInt = 4

    @model_validator(mode="after")
    def _server_options(self) -> PrmConfig:
        if self.backend != "openai" and (self.base_url or self.api_key_env or self.tokenizer):
            raise ValueError("base_url, api_key_env and tokenizer are options of the openai backend")
        if self.backend == "openai" and self.random_head_seed is not None:
            raise ValueError("random_head_seed builds a local stand-in (backend hf); set it to null for a served PRM")
        return self


class GrmConfig(Decoding):
    """bon method `grm`: a generative pointwise reward model (DeepSeek-GRM style) writes a critique and a
    score from 1 to 10 for each candidate; `samples` answers per candidate are summed (DeepSeek-GRM's
    voting); an unparsable answer scores 0, below the scale (daj/eval/reward_models.py)."""

    backend: EngineBackend = "hf"
    model: str = Field("models/tiny", min_length=1)
    adapter: str | None = None
    base_url: str | None = Field(None, min_length=1)     # openai backend only
    api_key_env: str | None = Field(None, min_length=1)  # openai backend only
    engine_options: dict[str, Any] = Field(default_factory=dict)
    max_new_tokens: PositiveInt = 16          # critique budget (tiny default; real GRMs need far more)
    samples: PositiveInt = 1
    max_prompt_chars: PositiveInt = 6000

    @model_validator(mode="after")
    def _server_options(self) -> GrmConfig:
        if self.backend != "openai" and (self.base_url or self.api_key_env):
            raise ValueError("base_url and api_key_env are options of the openai backend")
        return self

    def engine_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"backend": self.backend, "model": self.model, "adapter": self.adapter,
                                **self.engine_options}
        spec.update({k: v for k in ("base_url", "api_key_env") if (v := getattr(self, k)) is not None})
        return spec


class BonConfig(Section):
    policies: list[Name] = Field(default_factory=lambda: ["mutants"], min_length=1)
    methods: list[BonMethod] = Field(default_factory=lambda: list(BON_METHODS[:6]), min_length=1)
    rounds: PositiveInt = 8
    split: SplitName = "test"
    scaling_n: list[PositiveInt] | None = Field(default_factory=lambda: [1, 2, 4, 8])
    scaling_judge: bool = True
    share_votes: bool = False   # identical candidates share votes (off: the paper's tally)
    swap: bool = False          # the judge methods judge each pair in both orders, combined (daj/judge/swap.py)
    bootstrap: PositiveInt = 2000   # bootstrap replicates of the 95% intervals over problems
    prm: PrmConfig = Field(default_factory=PrmConfig)
    grm: GrmConfig = Field(default_factory=GrmConfig)

    @field_validator("methods")
    @classmethod
    def _unique_methods(cls, v: list[str]) -> list[str]:
        dup = sorted({m for m in v if v.count(m) > 1})
        if dup:
            raise ValueError(f"method {dup[0]!r} is listed twice")
        return v


class PairwiseConfig(Section):
    max_pairs_per_problem: PositiveInt | None = 4
    responses_per_pair: PositiveInt = 1


class CachesConfig(Section):
    """Where the caches live (null = off). A cache only saves time: deleting one changes no result,
    so no stage depends on these keys."""

    verdicts: str | None = Field(".cache/verdicts", min_length=1)    # sandbox verdicts
    judge: str | None = Field(".cache/judge", min_length=1)          # judge calls
    train_ref: str | None = Field(".cache/train_ref", min_length=1)  # reference log-probs
    sample: str = Field(".cache/sample", min_length=1)               # resumable partial samples


class ParamsConfig(Section):
    """The whole params.yaml."""

    seed: NonNegativeInt = 0
    benchmark: Benchmark = "humaneval"
    cpu_threads: NonNegativeInt = 1   # torch CPU threads of every model stage (0 = torch's default)
    data: DataConfig = Field(default_factory=DataConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    policies: list[PolicyConfig] = Field(
        default_factory=lambda: [PolicyConfig(name="mutants", backend="mutants", n=8)], min_length=1)
    execute: ExecuteConfig = Field(default_factory=ExecuteConfig)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    reward: RewardConfig = Field(default_factory=RewardConfig)
    pairs: PairsConfig = Field(default_factory=PairsConfig)
    reweight: Reweight = "none"
    train: TrainConfig = Field(default_factory=TrainConfig)
    bon: BonConfig = Field(default_factory=BonConfig)
    pairwise: PairwiseConfig = Field(default_factory=PairwiseConfig)
    caches: CachesConfig = Field(default_factory=CachesConfig)

    @model_validator(mode="after")
    def _policy_names(self) -> ParamsConfig:
        names = [p.name for p in self.policies]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise CrossFieldError("policies", f"duplicate policy name {dup[0]!r}")
        for key in ("pairs.lower_policies", "pairs.upper_policies", "bon.policies"):
            section, field = key.split(".")
            if section not in self.model_fields_set or field not in getattr(self, section).model_fields_set:
                continue  # a default names the default policy; only what the file says must match
            unknown = [n for n in getattr(getattr(self, section), field) if n not in names]
            if unknown:
                raise CrossFieldError(key, f"unknown policy {unknown[0]!r}; the policies are {', '.join(names)}")
        return self

    def policy(self, name: str) -> PolicyConfig:
        """The policy called `name` (KeyError when there is none)."""
        for p in self.policies:
            if p.name == name:
                return p
        raise KeyError(name)


class CrossFieldError(ValueError):
    """A rule between sections; carries the dotted key it is about."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def to_dict(config: ParamsConfig) -> dict:
    """The validated params as plain data, every default filled in (policies as written)."""
    out = config.model_dump(mode="json", exclude={"policies"})
    out["policies"] = [p.model_dump(mode="json", exclude_unset=True) for p in config.policies]
    return out
