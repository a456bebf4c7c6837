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

from dataclasses import dataclass

from daj.config import ParamsConfig, TrajectoryConfig
from daj.engines.registry import engine_options
from daj.errors import DajError
from daj.judge.cache import JudgeCache
from daj.judge.runner import JudgeRunner, build_runner, engine_cache_name, judge_tokenizer, make_named_engine

JUDGE = "judge"


@dataclass(frozen=True)
class TrajectoryModel:
    """One writer of judge responses: `config` None means the judge itself."""

    name: str
    config: TrajectoryConfig | None = None
    where: str = ""                                # its dotted key in params.yaml

    @property
    def is_judge(self) -> bool:
        return self.config is None

    @property
    def spec(self) -> dict | None:
        """Its make_engine spec (None for the judge)."""
        return None if self.config is None else self.config.engine_spec()

    @property
    def settings(self) -> dict:
        """The judge settings it sets itself."""
        return {} if self.config is None else self.config.settings

    @property
    def seed(self) -> int | None:
        return None if self.config is None else self.config.seed

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


def parse_trajectories(config: ParamsConfig, level: str, where: str = "params.yaml") -> list[TrajectoryModel]:
    """The trajectory models of `level` (lower / upper), each engine's options checked against its
    backend before any model is loaded (the error names the file and the key)."""
    key = f"pairs.{level}_trajectories"
    items = config.pairs.trajectories(level)
    if items is None:
        return [TrajectoryModel(JUDGE, where=key)]
    out = []
    for i, item in enumerate(items):
        at = f"{key}[{i}]"
        if item == JUDGE:
            out.append(TrajectoryModel(JUDGE, where=at))
            continue
        try:
            cls, _ = engine_options(item.engine_spec())  # unknown options fail now
        except DajError as e:
            raise e.at(path=where, under=at) from None
        own = config.judge.with_settings(item.settings)
        if own.scores_options and not callable(getattr(cls, "score_continuations", None)):
            option = "mode" if own.selection_only else "force_selection"
            what = "mode select" if own.selection_only else ("force_selection (inherited from "
                                                             "judge.force_selection unless set here)")
            raise DajError(f"{what} needs an engine that scores continuations (the hf backend); backend "
                           f"{item.backend!r} cannot: set {option} here", path=where, field=f"{at}.{option}")
        out.append(TrajectoryModel(item.name, item, at))
    return out


class TrajectoryRunners:
    """The runners of the trajectory models of every level (`levels`: level -> models, in run order).

    Engines are built on first use, shared by trajectory models with equal engines, and closed
    as soon as no later trajectory model uses them (at paper scale each may hold a GPU).
    """

    def __init__(self, config: ParamsConfig, levels: dict[str, list[TrajectoryModel]], where: str = "params.yaml"):
        self.config, self.levels, self.where = config, levels, where
        self.engines: dict[str, object] = {}  # engine key -> engine
        self.runners: dict[tuple, JudgeRunner] = {}
        self._judge_tokenizer = None

    def _judge(self) -> JudgeRunner:
        ident = (JUDGE, ())
        if ident not in self.runners:
            runner, self._judge_tokenizer = build_runner(self.config.judge, self.config.judge.adapter,
                                                         self.config.caches.judge, where=self.where)
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
            try:
                if key not in self.engines:
                    self.engines[key] = make_named_engine(model.spec)
                settings = self.config.judge.with_settings(model.settings)
                self.runners[ident] = JudgeRunner(self.engines[key], settings, JudgeCache(self.config.caches.judge),
                                                  progress=True, label=model.spec["model"])
            except DajError as e:  # a bad option, forced selection on an engine that cannot score options
                raise e.at(path=self.where, under=model.where) from None
        return self.runners[ident]

    def tokenizer(self):
        """The judge's tokenizer, which renders every level's prompts: its engine's own when the judge
        writes the first level, else loaded from judge.tokenizer / judge.model (no judge engine)."""
        first = next(iter(self.levels.values()), [])
        if any(m.is_judge for m in first):
            self._judge()
            return self._judge_tokenizer
        try:
            return judge_tokenizer(None, self.config.judge)
        except DajError as e:
            raise e.at(path=self.where, under="judge") from None
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
