"""Trajectory models: who writes the judge responses of each level of the `pairs` stage.

The paper (section 5.1, Appendix C) feeds the lower level with reasoning trajectories of
cost-efficient models and the upper (meta) level with those of stronger ones; "trajectory
alignment" reweights that asymmetry. `pairs.lower_trajectories` / `pairs.upper_trajectories` name
them: null (the judge itself, the default) or a list whose items are

- the string `judge`: the judge (judge.backend, judge.model, judge.adapter and its settings);
- a mapping `{name, backend, model, ...}`: any engine of daj.engines (hf / vllm / openai), with its
  options (adapter, base_url, api_key_env, extra_body, batch_size, dtype, ...), plus optional judge
  settings of its own (mode, temperature, top_p, top_k, repetition_penalty, max_new_tokens,
  force_selection, force_sampling; the rest come from judge.*), and `seed` (the base seed of its
  requests; default the global seed).

Every trajectory model answers every pair prompt of its level `pairs.responses_per_pair` times.
Names are unique within a level; `judge` is reserved for the judge.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from daj.engines.registry import engine_options
from daj.errors import DajError
from daj.judge.cache import JudgeCache
from daj.judge.runner import (
    SETTING_KEYS,
    JudgeRunner,
    JudgeSettings,
    build_runner,
    engine_cache_name,
    judge_tokenizer,
    make_named_engine,
)

JUDGE = "judge"


@dataclass(frozen=True)
class TrajectoryModel:
    """One writer of judge responses. `spec` None means the judge itself."""

    name: str
    spec: dict | None = None                       # make_engine spec
    settings: dict = field(default_factory=dict)   # judge settings of its own (SETTING_KEYS)
    seed: int | None = None                        # base seed of its requests (None: the global seed)
    where: str = ""                                # its dotted key in params.yaml

    @property
    def is_judge(self) -> bool:
        return self.spec is None

    def engine_key(self) -> str:
        """Identity of the engine (the judge, or the spec's cache name): equal keys share one engine."""
        return JUDGE if self.spec is None else engine_cache_name(self.spec)

    def describe(self, judge_spec: dict) -> dict:
        """What metrics record about it: name, backend, model, adapter and base_url when set."""
        spec = judge_spec if self.spec is None else self.spec
        out = {"name": self.name, "backend": spec.get("backend"), "model": spec.get("model"),
               "adapter": spec.get("adapter")}
        if spec.get("base_url"):
            out["base_url"] = spec["base_url"]
        if self.settings:
            out["settings"] = dict(self.settings)
        if self.seed is not None:
            out["seed"] = self.seed
        return out


def parse_trajectories(params, level: str, judge_settings: JudgeSettings) -> list[TrajectoryModel]:
    """The trajectory models of `level` (lower / upper) from pairs.<level>_trajectories, checked:
    engine options against the backend, settings by type (the error names params.yaml and the key)."""
    key = f"pairs.{level}_trajectories"
    value = params.get_path(key, None)
    if value is None:
        return [TrajectoryModel(JUDGE, where=key)]
    if not isinstance(value, list) or not value:
        raise DajError(f"expected null or a non-empty list of 'judge' / {{name, backend, model, ...}}, got {value!r}",
                       path=params.path, field=key)
    out: list[TrajectoryModel] = []
    for i, item in enumerate(value):
        where = f"{key}[{i}]"
        if item == JUDGE:
            model = TrajectoryModel(JUDGE, where=where)
        elif isinstance(item, dict):
            model = _parse_spec(params, item, where, judge_settings)
        else:
            raise DajError(f"expected 'judge' or a mapping {{name, backend, model, ...}}, got {item!r}",
                           path=params.path, field=where)
        if model.name in {m.name for m in out}:
            raise DajError(f"trajectory model name {model.name!r} is used twice in {key}", path=params.path,
                           field=f"{where}.name")
        out.append(model)
    return out


def _parse_spec(params, item: dict, where: str, judge_settings: JudgeSettings) -> TrajectoryModel:
    name = item.get("name")
    if not isinstance(name, str) or not name or "#" in name or "/" in name:
        raise DajError(f"expected a non-empty name without '#' or '/', got {name!r}", path=params.path,
                       field=f"{where}.name")
    if name == JUDGE:
        raise DajError("the name 'judge' is reserved for the judge itself (write the item as the string 'judge')",
                       path=params.path, field=f"{where}.name")
    for required in ("backend", "model"):
        if not isinstance(item.get(required), str) or not item[required]:
            raise DajError(f"expected a non-empty string, got {item.get(required)!r}", path=params.path,
                           field=f"{where}.{required}")
    settings = {k: item[k] for k in SETTING_KEYS if k in item}
    own = judge_settings.override(settings, params.path, where)  # type and range checks, naming the key
    seed = item.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise DajError(f"expected a non-negative integer, got {seed!r}", path=params.path, field=f"{where}.seed")
    spec = {k: v for k, v in item.items() if k not in set(SETTING_KEYS) | {"name", "seed"}}
    spec.setdefault("adapter", None)
    try:
        cls, _ = engine_options(spec)  # unknown options fail now, before any model is loaded
    except DajError as e:
        raise DajError(str(e).split(": ", 1)[-1], path=params.path, field=f"{where}.{e.field}") from None
    if own.scores_options and not callable(getattr(cls, "score_continuations", None)):
        key = "mode" if own.selection_only else "force_selection"
        what = "mode select" if own.selection_only else "force_selection (inherited from judge.force_selection " \
            "unless set here)"
        raise DajError(f"{what} needs an engine that scores continuations (the hf backend); backend "
                       f"{spec['backend']!r} cannot: set {key} here", path=params.path, field=f"{where}.{key}")
    return TrajectoryModel(name, spec, settings, seed, where)


class TrajectoryRunners:
    """The runners of the trajectory models of every level (`levels`: level -> models, in run order).

    Engines are built on first use, shared by trajectory models with equal engines, and closed
    as soon as no later trajectory model uses them (at paper scale each may hold a GPU).
    """

    def __init__(self, params, settings: JudgeSettings, levels: dict[str, list[TrajectoryModel]]):
        self.params, self.settings, self.levels = params, settings, levels
        self.engines: dict[str, object] = {}  # engine key -> engine
        self.runners: dict[tuple, JudgeRunner] = {}
        self._judge_tokenizer = None

    def _judge(self) -> JudgeRunner:
        ident = (JUDGE, ())
        if ident not in self.runners:
            runner, self._judge_tokenizer = build_runner(self.params, self.params.get_path("judge.adapter", None),
                                                         settings=self.settings)
            self.engines[JUDGE] = runner.engine
            self.runners[ident] = runner
        return self.runners[ident]

    def runner(self, model: TrajectoryModel) -> JudgeRunner:
        """The runner of a trajectory model (the judge's own for `judge`)."""
        if model.is_judge:
            return self._judge()
        key = model.engine_key()
        ident = (key, tuple(sorted(model.settings.items())))
        if ident not in self.runners:
            if key not in self.engines:
                self.engines[key] = make_named_engine(model.spec, self.params.path,
                                                      lambda option: f"{model.where}.{option}")
            settings = self.settings.override(model.settings, self.params.path, model.where)
            try:
                self.runners[ident] = JudgeRunner(self.engines[key], settings,
                                                  JudgeCache(self.params.get_path("judge.cache_dir", None)),
                                                  progress=True, label=model.spec["model"])
            except DajError as e:  # e.g. forced selection on an engine that cannot score options
                option = e.field.split(".", 1)[1] if e.field else "backend"
                raise DajError(str(e).split(": ", 1)[-1], path=self.params.path,
                               field=f"{model.where}.{option}") from None
        return self.runners[ident]

    def tokenizer(self):
        """The judge's tokenizer, which renders every level's prompts: its engine's own when the judge
        writes the first level, else loaded from judge.tokenizer / judge.model (no judge engine)."""
        first = next(iter(self.levels.values()), [])
        if any(m.is_judge for m in first):
            self._judge()
            return self._judge_tokenizer
        return judge_tokenizer(None, self.params)

    def release(self, level: str, model: TrajectoryModel) -> None:
        """Close `model`'s engine unless a later trajectory model (in run order) uses the same one."""
        order = [(name, m) for name, models in self.levels.items() for m in models]
        at = next(i for i, (name, m) in enumerate(order) if name == level and m is model)
        key = model.engine_key()
        if any(m.engine_key() == key for _, m in order[at + 1:]):
            return
        engine = self.engines.pop(key, None)
        if engine is not None:
            engine.close()
            self.runners = {i: r for i, r in self.runners.items() if i[0] != key}

    def close(self) -> None:
        for engine in self.engines.values():
            engine.close()
        self.engines.clear()
        self.runners.clear()
