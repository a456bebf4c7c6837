"""The typed contract of params.yaml: one pydantic model per section, defaults in one place.

`validate_params(raw, path)` checks a whole params mapping once, when a stage starts: an unknown
key, a wrong type or a value out of range stops the stage with one line naming the file, the line,
the dotted key and what was expected. Stages then read the validated mapping, where every default
is filled in from the models below (and nowhere else).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from daj.errors import DajError

REWEIGHTS = ("none", "domain", "instance_table", "instance_net")
OBJECTIVES = ("dpo", "kto", "orpo", "grpo")
POLICY_BACKENDS = ("file", "mutants", "hf", "vllm", "openai")
GENERATIVE = ("hf", "vllm", "openai")
SAMPLING_KEYS = ("n", "temperature", "top_p", "top_k", "repetition_penalty", "max_new_tokens", "seed")


class Section(BaseModel):
    """A params section: unknown keys rejected, no silent coercion (YAML gives real types)."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_default=True)


Fraction = Annotated[float, Field(gt=0, lt=1)]
Probability = Annotated[float, Field(gt=0, le=1)]
PolicyName = Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]*$")]


def _iso_date(value: Any) -> str:
    """YYYY-MM-DD (a YAML date or a quoted string)."""
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str):
        dt.date.fromisoformat(value)  # ValueError names the problem
        return value
    raise ValueError(f"expected a date YYYY-MM-DD, got {value!r}")


class DataConfig(Section):
    source: str = "package"             # package / hf / a local snapshot directory
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


class SamplingConfig(Section):
    """The paper's decoding settings; every policy may override them."""

    n: PositiveInt = 4
    temperature: NonNegativeFloat = 0.7
    top_p: Probability = 0.8
    top_k: NonNegativeInt = 20
    repetition_penalty: PositiveFloat = 1.05
    max_new_tokens: PositiveInt = 8192


class PolicyConfig(BaseModel):
    """One candidate pool. Backend options (model, base_url, path, ...) are checked per backend."""

    model_config = ConfigDict(extra="allow", strict=True)

    name: PolicyName
    backend: Literal["file", "mutants", "hf", "vllm", "openai"]
    n: PositiveInt | None = None
    problems: PositiveInt | None = None

    @model_validator(mode="after")
    def _backend_options(self) -> PolicyConfig:
        extra = dict(self.model_extra or {})
        if self.backend == "file":
            if not extra.get("path"):
                raise ValueError("a file policy needs 'path' (a pool file or a list of them)")
            unknown = set(extra) - {"path", "chunk"}
        elif self.backend == "mutants":
            unknown = set(extra) - {"seed", "chunk"}
        else:
            if not extra.get("model"):
                raise ValueError(f"a {self.backend} policy needs 'model'")
            from daj.engines.registry import engine_options

            options = {k: v for k, v in extra.items() if k not in ("chunk",)}
            try:
                engine_options({"backend": self.backend, **options})
            except DajError as e:
                raise ValueError(str(e).split(": ", 1)[-1]) from None
            unknown = set()
        if unknown:
            raise ValueError(f"unknown option(s) {', '.join(sorted(unknown))} for a {self.backend} policy")
        return self


class SampleConfig(Section):
    work_dir: str = ".cache/sample"


class ExecuteConfig(Section):
    backend: Literal["auto", "local", "docker"] = "auto"
    allow_unsandboxed: bool = False
    verdict_source: Literal["sandbox", "imported"] = "sandbox"
    timeout_s: PositiveFloat = 6.0
    wall_factor: Annotated[float, Field(ge=1)] = 4.0
    memory_mb: PositiveInt = 2048
    workers: NonNegativeInt = 0
    cache_dir: str | None = ".cache/verdicts"
    unittest_memory_mb: PositiveInt = 30720
    output_mb: PositiveInt = 64
    pids_limit: PositiveInt = 128
    sandbox_memory_mb: PositiveInt = 4096
    docker_image: str = "daj-sandbox:latest"
    seccomp: bool = True
    sandbox_cpus: NonNegativeFloat = 1.0   # cgroup CPU quota per sandbox in cores (local; 0 = none)
    retries: NonNegativeInt = 1            # reruns on a fresh server after an infrastructure fault


class RewardConfig(Section):
    correct: float = 1.0
    wrong: float = 0.0
    format_error: float = -1.0

    @model_validator(mode="after")
    def _ordered(self) -> RewardConfig:
        if not self.correct > self.wrong >= self.format_error:
            raise ValueError("expected correct > wrong >= format_error")
        return self


class JudgeConfig(Section):
    backend: Literal["hf", "vllm", "openai"] = "hf"
    model: str = "models/tiny"
    adapter: str | None = None
    base_url: str | None = None          # openai backend only (null = http://127.0.0.1:8000/v1)
    api_key_env: str | None = None       # openai backend only (null = OPENAI_API_KEY)
    mode: Literal["reason", "select"] = "reason"
    max_new_tokens: NonNegativeInt = 16  # mode reason only (>= 1 there)
    temperature: NonNegativeFloat = 0.7
    top_p: Probability = 0.8
    top_k: NonNegativeInt = 20
    repetition_penalty: PositiveFloat = 1.05
    force_selection: bool = True
    force_sampling: bool = True
    swap: bool = False
    max_prompt_chars: PositiveInt = 6000
    cache_dir: str | None = ".cache/judge"
    engine_options: dict[str, Any] = Field(default_factory=dict)
    tokenizer: str | None = None
    reward: RewardConfig = Field(default_factory=RewardConfig)

    @model_validator(mode="after")
    def _server_options(self) -> JudgeConfig:
        if self.backend != "openai" and (self.base_url or self.api_key_env):
            raise ValueError("base_url and api_key_env are options of the openai backend")
        if self.mode == "reason" and self.max_new_tokens < 1:
            raise ValueError("max_new_tokens 0 generates nothing: use mode select for selection only")
        return self


class SplitCaps(Section):
    lower: PositiveInt | None = None
    upper: PositiveInt | None = None


# who writes a level's judge responses: null = the judge; else "judge" or an engine spec
# {name, backend, model, ...} (checked in full by daj.judge.trajectories before any work)
Trajectories = list[Literal["judge"] | dict[str, Any]] | None


class PairsConfig(Section):
    lower_policies: list[PolicyName] = Field(default_factory=lambda: ["mutants"], min_length=1)
    upper_policies: list[PolicyName] = Field(default_factory=lambda: ["mutants"], min_length=1)
    max_pairs_per_problem: PositiveInt | None = 2
    responses_per_pair: PositiveInt = 2
    lower_trajectories: Trajectories = None
    upper_trajectories: Trajectories = None
    max_problems: PositiveInt | SplitCaps | None = None


class TrainConfig(Section):
    objective: Literal["dpo", "kto", "orpo", "grpo"] = "dpo"
    beta: PositiveFloat = 0.1
    grpo_group: Annotated[int, Field(ge=2)] = 4
    grpo_mode: Literal["online", "offline"] = "online"
    rollout_adapter_dir: str = ".cache/rollout_adapters"
    steps: PositiveInt = 12               # lower iterations (micro-batches); optimizer steps = steps / grad_accum
    lr: PositiveFloat = 1.0e-4
    meta_lr: PositiveFloat = 1.0e-2
    grad_accum: PositiveInt = 2
    meta_grad_accum: PositiveInt = 1
    meta_every: PositiveInt = 1
    batch_size: PositiveInt = 1
    max_length: PositiveInt = 1024
    precision: Literal["fp32", "bf16"] = "fp32"
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
    ref_cache_dir: str | None = ".cache/train_ref"

    @model_validator(mode="after")
    def _whole_optimizer_steps(self) -> TrainConfig:
        if self.steps % self.grad_accum:
            raise ValueError(f"steps ({self.steps}) counts lower iterations and must be a multiple of "
                             f"grad_accum ({self.grad_accum})")
        return self


class BonConfig(Section):
    policies: list[PolicyName] = Field(default_factory=lambda: ["mutants"], min_length=1)
    rounds: PositiveInt = 8
    split: Literal["test", "upper", "lower"] = "test"
    scaling_n: list[PositiveInt] | None = Field(default_factory=lambda: [1, 2, 4, 8])
    scaling_judge: bool = True
    share_votes: bool = False   # identical candidates share votes (off: the paper's tally)


class PairwiseConfig(Section):
    max_pairs_per_problem: PositiveInt | None = 4
    responses_per_pair: PositiveInt | None = 1


class ParamsConfig(Section):
    """The whole params.yaml."""

    seed: NonNegativeInt = 0
    benchmark: Literal["humaneval", "lcb", "bcb"] = "humaneval"
    cpu_threads: NonNegativeInt = 1   # torch CPU threads of every model stage (0 = torch's default)
    data: DataConfig = Field(default_factory=DataConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    policies: list[PolicyConfig] = Field(
        default_factory=lambda: [PolicyConfig(name="mutants", backend="mutants", n=8)], min_length=1)
    sample: SampleConfig = Field(default_factory=SampleConfig)
    execute: ExecuteConfig = Field(default_factory=ExecuteConfig)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    pairs: PairsConfig = Field(default_factory=PairsConfig)
    reweight: Literal["none", "domain", "instance_table", "instance_net"] = "none"
    train: TrainConfig = Field(default_factory=TrainConfig)
    bon: BonConfig = Field(default_factory=BonConfig)
    pairwise: PairwiseConfig = Field(default_factory=PairwiseConfig)

    @model_validator(mode="after")
    def _policy_names(self) -> ParamsConfig:
        names = [p.name for p in self.policies]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise _CrossFieldError("policies", f"duplicate policy name {dup[0]!r}")
        for key in ("pairs.lower_policies", "pairs.upper_policies", "bon.policies"):
            section, field = key.split(".")
            if section not in self.model_fields_set or field not in getattr(self, section).model_fields_set:
                continue  # a default names the default policy; only what the file says must match
            unknown = [n for n in getattr(getattr(self, section), field) if n not in names]
            if unknown:
                raise _CrossFieldError(key, f"unknown policy {unknown[0]!r}; the policies are {', '.join(names)}")
        return self


class _CrossFieldError(ValueError):
    """A rule between sections; carries the dotted key it is about."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def to_dict(config: ParamsConfig) -> dict:
    """The validated params as plain data, every default filled in (policies as written)."""
    out = config.model_dump(mode="json", exclude={"policies"})
    out["policies"] = [p.model_dump(mode="json", exclude_unset=True) for p in config.policies]
    return out


def validate_params(raw: dict, path: str = "params.yaml", text: str | None = None) -> ParamsConfig:
    """The typed params, or a DajError naming the file, line, dotted key and what was expected."""
    try:
        return ParamsConfig.model_validate(raw)
    except ValidationError as e:
        # the deepest location names the real culprit (a union reports one error per member)
        err = max(e.errors(include_url=False), key=lambda x: len(x["loc"]))
        ctx_error = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_error, _CrossFieldError):
            key, message = ctx_error.key, str(ctx_error)
        else:
            key = dotted(err["loc"])
            message = _explain(err, key)
        line = key_line(text, key) if text is not None else None
        more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        raise DajError(message + more, path=path, line=line, field=key or None) from None


_UNION_TAGS = {"int", "float", "str", "bool", "none"} | {m.__name__ for m in Section.__subclasses__()}


def dotted(loc: tuple) -> str:
    """('policies', 0, 'name') -> 'policies[0].name'; pydantic's union tags are dropped."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(("function-", "constrained-")) or part in _UNION_TAGS or part.endswith("]"):
            continue  # a union member's tag: 'int', 'SplitCaps', 'list[str]', ...
        else:
            out += f".{part}" if out else str(part)
    return out


def _explain(err: dict, key: str) -> str:
    if err["type"] == "extra_forbidden":
        section = key.rsplit(".", 1)[0] if "." in key else None
        model = _section_model(section)
        allowed = f"; expected one of {', '.join(model.model_fields)}" if model else ""
        return f"unknown key{allowed}"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    msg = msg.replace("Input should be", "expected").replace("String should", "expected the text to")
    shown = "input" in err and err["type"] != "missing" and not isinstance(err["input"], dict | list)
    return f"{msg}, got {err['input']!r}" if shown else msg


def _section_model(section: str | None) -> type[BaseModel] | None:
    model: type[BaseModel] = ParamsConfig
    if section is None:
        return model
    for part in section.split("."):
        field = model.model_fields.get(part.split("[")[0])
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def key_line(text: str | None, key: str) -> int | None:
    """1-based line of a dotted key in a YAML text (the deepest part found)."""
    import yaml

    if not text or not key:
        return None
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    parts = key.replace("]", "").replace("[", ".").split(".")
    for part in parts:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == part), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            node = node.value[int(part)]
            line = node.start_mark.line + 1
        else:
            break
    return line
