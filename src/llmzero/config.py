"""The experiment file (YAML) as typed models: the one place that validates user input for a search.

Every field has a doc. A bad value raises ConfigError with one line naming the field, the value and
what is allowed. Values are never silently rewritten.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from llmzero.strategy import _Loader, yaml_problem

METHODS = ("mcts", "skill", "fixed", "grid", "random", "pbt")


class ConfigError(ValueError):
    """An experiment file or override that is not allowed; one line."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SizesConfig(_Model):
    train: int = Field(20_000, ge=1, le=3_000_000, description="Training problems (before de-duplication).")
    val: int = Field(500, ge=1, le=3_000_000, description="Validation problems: the search selects on these.")
    test: int = Field(500, ge=1, le=3_000_000, description="Test problems: scored once, on the best node.")


class TaskConfig(_Model):
    name: str = Field(description="A built-in task (llmzero tasks) or rg:<reasoning-gym dataset>.")
    difficulty: int = Field(2, ge=1, le=3, description="Difficulty level of the validation and test problems.")
    sizes: SizesConfig = Field(default_factory=SizesConfig)
    data_seed: int = Field(0, ge=0, le=99, description="Shifts every split to other problems.")
    config: dict[str, Any] = Field(default_factory=dict, description="reasoning-gym config, rg: tasks only.")
    chat: bool = Field(
        False, description="rg: tasks with a chat model only: each prompt is reasoning-gym's default system prompt "
        "(think step by step, then the answer in <answer> tags) and the question as the user's message, rendered "
        "by the model's chat template; the answer is read from the completion's last <answer>...</answer>.")


class EarlyStopConfig(_Model):
    enabled: bool = Field(True, description="Prune branches that fall clearly behind.")
    margin: float = Field(0.05, ge=0, le=1, description="Pruned when val < best val at the same depth - margin.")
    min_depth: int = Field(1, ge=1, description="Never prune above this depth.")


class PBTConfig(_Model):
    population: int = Field(4, ge=2, le=64, description="Members trained side by side.")
    quantile: float = Field(0.25, gt=0, le=0.5, description="Bottom share that exploits the top share.")
    perturb: tuple[float, float] = Field((0.8, 1.25), description="Factors an explored value is multiplied by.")
    params: tuple[str, ...] = Field(("learning_rate", "entropy_coef", "temperature", "beta"),
                                    description="Parameters that explore perturbs.")


class LLMConfig(_Model):
    backend: Literal["llama", "openai", "replay"] = Field(
        "llama", description="llama: the embedded Qwen2.5-Coder model (install: make local-llm); openai: any "
        "OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp server); replay: recorded transcripts.")
    tier: Literal["0.5b", "1.5b"] = Field("0.5b", description="Embedded model size (llama backend).")
    n_threads: int = Field(1, ge=1, le=64, description="Embedded model threads (1 is robust beside training).")
    base_url: str | None = Field(None, description="Endpoint of an OpenAI-compatible server (openai backend).")
    model: str = Field("gpt-4o-mini", description="Model name at the endpoint (openai backend).")
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable holding the API key.")
    response_format: Literal["json_schema", "json_object", "none"] = Field(
        "json_schema", description="json_schema (OpenAI, vLLM, Ollama) or json_object (llama-cpp-python server).")
    timeout: float = Field(60.0, gt=0, description="Seconds per request.")
    retries: int = Field(2, ge=0, le=10, description="Retries with exponential backoff on errors or bad JSON.")
    path: str | None = Field(None, description="Transcript file (replay backend).")
    temperature: float = Field(0.2, ge=0, le=2, description="Sampling temperature of the agent's answers.")
    max_tokens: int = Field(400, ge=50, le=8192, description="Longest answer.")
    answer: Literal["auto", "menu", "free"] = Field(
        "auto", description="menu: the agent picks and justifies options from the skill library (short answers, "
        "made for small models); free: it writes the changes itself; auto: free for the openai backend, "
        "menu otherwise.")
    curves: bool = Field(False, description="Attach the node's training curves as a PNG to each prompt (openai "
                         "backend with a vision-capable model).")
    order_check: bool = Field(
        False, description="Menu answers: ask again with the menu rotated; a pick counts only if the rotated "
        "answer picks the same option, and the branch closes only if both answers close it (small models "
        "pick by position; what is not confirmed follows the skill library's order)."
        " Doubles the agent's calls.")
    diagnose_first: bool = Field(
        False, description="Menu answers: at a node with two findings or more, first ask the agent for the "
        "main finding alone; the menu then lists that finding's remedies first (small models name findings "
        "by what they are, but pick options by their place). One more call at such nodes.")


class SearchConfig(_Model):
    method: Literal["mcts", "skill", "fixed", "grid", "random", "pbt"] = Field(
        "mcts", description="mcts: UCT tree search with a proposer; skill: the rule-based agent along the best "
        "path; fixed: the default schedule; grid: static configurations; random: random per-stage schedules; "
        "pbt: population-based training.")
    proposer: Literal["llm", "skill", "random", "draws"] = Field(
        "llm", description="Who proposes children in mcts: the LLM agent (default), or without an LLM the skill "
        "agent (the ablation), random, or draws (the control: children repeat their node's parameters, only "
        "the training draw differs).")
    depth: int = Field(3, ge=1, le=50, description="Stages along a path (the tree's depth).")
    deepen: Literal["off", "exhausted", "improving"] = Field(
        "exhausted", description="mcts, skill and grid: when the paths may grow one more stage (again and again, "
        "up to 50). exhausted: when the tree has nothing left to grow and budget is left, so the best strategies "
        "train longer instead of the budget going unspent (grid: its best runs, as many as there are workers, "
        "once every configuration has run); improving (mcts and skill): also as soon as the best node is at "
        "the full depth and still improving on its parent, and that node is grown first, so training length "
        "follows the curve; "
        "off: never (true and false mean exhausted and off).")
    dive_patience: int = Field(
        0, ge=0, le=5, description="deepen: improving only: stages of a dive that may stall. 0: the dive goes on "
        "while the best node beats its parent's validation score; n: also while the best leaf at the full depth "
        "beats one of its n + 1 nearest ancestors' (a noisy stage does not end a rising path).")
    steps_per_stage: int = Field(100, ge=1, le=100_000, description="GRPO steps of every stage.")
    stage_compute: Literal["steps", "tokens"] = Field(
        "steps", description="steps: every stage trains steps_per_stage GRPO steps; tokens: every stage costs what "
        "a stage at the starting group size does (steps_per_stage x the starting num_generations / the stage's), "
        "so a child that doubles the group trains half the steps and siblings are compared at equal cost.")
    branching: int = Field(2, ge=1, le=16, description="Children proposed per expansion (K).")
    dive_branching: int | None = Field(
        None, ge=1, le=16, description="deepen: improving only: children of the improving best node per "
        "expansion while the path dives, and they are the whole batch (other workers wait), so a rising curve "
        "gets a larger share of the budget along its path (1: one stage per level instead of branching). "
        "None: branching children, the rest of the batch elsewhere.")
    max_children: int = Field(3, ge=1, le=64, description="Most children of one node.")
    exploration: float = Field(0.3, ge=0, le=100, description="UCT exploration constant c.")
    backup: Literal["max", "mean"] = Field("max", description="How a subtree's value is backed up.")
    early_stop: EarlyStopConfig = Field(default_factory=EarlyStopConfig)
    grid: dict[str, list[float]] = Field(
        default_factory=lambda: {"learning_rate": [5e-5, 1e-4, 2e-4], "entropy_coef": [0.0, 0.01]},
        description="grid method: values per parameter; their product is the set of static configurations.")
    pbt: PBTConfig = Field(default_factory=PBTConfig)
    soup: int = Field(
        0, ge=0, le=64, description="The final model as a greedy weight soup: the best node's checkpoint "
        "averaged with the next best kept ones (up to this many in all, by validation score), each added "
        "only if the validation score does not drop; the test split scores the soup. 0 or 1: off.")
    draws: int = Field(
        1, ge=1, le=16, description="GRPO draws of every stage: each stage is trained this many times "
        "from its parent with other seeds, and its checkpoint is their greedy weight soup (the best draw, "
        "then each next one if the validation score of the average does not drop). A stage costs this "
        "many times more compute. 1: off.")
    draws_min_gain: float | None = Field(
        None, ge=0, le=1, description="With draws > 1: once the first 3 stages of several draws have "
        "finished, the search keeps training several draws only if their soups scored at least this much "
        "above their better draw on validation (mean of the 3), and trains single draws from then on "
        "otherwise: draws that average to no better than the best of them cost breadth for a choice that "
        "siblings give as well. Decided once, journaled (draws_decided). None: always draws.")
    sibling_soup: bool = Field(
        False, description="mcts and skill: after a stage finishes, its siblings (children of the same "
        "parent with the same steps and mode, up to 4, best first) are averaged as a greedy weight soup; "
        "a soup that takes two or more becomes a child of that parent (no training, one validation pass "
        "per sibling), which the search may grow from like any node. Replays as a stage with merge.")
    lineages: int = Field(
        1, ge=1, le=16, description="mcts and skill: grow this many lineages from the base model side by side "
        "instead of one tree: the agent proposes each lineage's next stage from its last checkpoint (the "
        "shortest lineage first), and a lineage that fails or is pruned is replaced by a new one from the "
        "base model, while the budget lasts (up to search.depth stages with deepen: off, else up to 50). "
        "With search.soup the final soup can average the ends of lineages trained apart, as grid's soup "
        "averages its runs. 1: the tree search.")
    lineage_start: Literal["agent", "start", "grid"] = Field(
        "agent", description="search.lineages > 1: how a lineage's first stage is chosen. agent: the agent "
        "proposes the lineages' first stages from the base model, distinct from one another; start: every "
        "lineage trains its first stage with the starting parameters (params; a prior's first move, with "
        "search.prior) on its own data order; grid: lineage i trains its first stage with the i-th of "
        "search.grid's configurations nearest to the starting parameters, the order grid search runs them "
        "in (the first is the starting parameters when they lie on the grid). With start and grid the agent "
        "proposes from the second stage on, when the lineage has curves to read (a base model has no GRPO "
        "dynamics to diagnose).")
    scale_updates: bool = Field(
        False, description="mcts and skill: after a stage finishes, its update from the parent's weights is "
        "scaled by 0.5 and by 1.5 (parent + scale x (stage - parent)); the better, if its validation score "
        "is above the stage's, becomes a sibling of the stage (no training, a validation pass per scale), "
        "which the search may grow from like any node. Replays as a stage with scale.")
    prior: str | None = Field(
        None, description="A search run directory (usually on another task) whose discovered strategy and "
        "dynamics guide mcts and skill: the agent reads them, and each node's first child follows the "
        "strategy's move for that stage (llmzero transfer sets this).")

    @field_validator("deepen", mode="before")
    @classmethod
    def _deepen_bool(cls, v: object) -> object:
        return {True: "exhausted", False: "off"}.get(v, v) if isinstance(v, bool) else v

    @field_validator("grid")
    @classmethod
    def _grid_not_empty(cls, v: dict[str, list[float]]) -> dict[str, list[float]]:
        for k, vals in v.items():
            if not vals:
                raise ValueError(f"grid.{k} has no values")
        return v


class BudgetConfig(_Model):
    compute: int = Field(ge=1, description="Generated tokens summed over every stage (steps x tokens per step), "
                         "the same meter for every method.")
    wall_seconds: float | None = Field(None, gt=0, description="Optional wall-clock limit.")


class ExecutorConfig(_Model):
    kind: Literal["local", "ray"] = Field(
        "local", description="Where stages run: 'local' (worker processes on this machine) or 'ray' (Ray actors, "
        "on a local Ray instance or a cluster; install with `pip install 'llmzero[ray]'`).")
    workers: int = Field(1, ge=1, le=64, description="Persistent workers (processes or Ray actors); stages run "
                         "in parallel.")
    address: str | None = Field(
        None, description="kind 'ray' only: the cluster to join ('auto', or 'ray://HOST:10001'); unset joins the "
        "one RAY_ADDRESS names, or starts a Ray instance on this machine. Workers write checkpoints under the run directory, so on a cluster it "
        "must be on a filesystem every node mounts at the same path.")
    cpus_per_worker: int = Field(1, ge=1, le=256, description="kind 'ray' only: CPUs each actor reserves, and its "
                                 "torch threads.")
    gpus_per_worker: float = Field(
        0, ge=0, le=64, description="kind 'ray' only: GPUs each actor reserves (a fraction shares a GPU between "
        "actors); an actor trains on CUDA only if it reserves one. 0: the actors train on their CPUs.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where stages train and checkpoints are scored. auto: on CUDA when a CUDA device is "
        "visible (kind 'ray': when the actors reserve GPUs), else on the CPU; cpu: always on the CPU; cuda: on CUDA, "
        "and an error if none is visible. With kind 'local' and several GPUs, the workers take one each in turn. "
        "The tiny presets' base models are built on the CPU either way.")
    bf16: bool = Field(
        False, description="Train stages in bf16 mixed precision (TRL's bf16; on the CPU as well). The weights "
        "and checkpoints stay float32.")


class StorageConfig(_Model):
    keep_top_k: int = Field(3, ge=1, description="Checkpoints kept besides the best path and expandable nodes.")


class TrainingConfig(_Model):
    prompts_per_step: int = Field(8, ge=1, le=4096, description="Prompts per GRPO step (x num_generations).")


class ExperimentConfig(_Model):
    task: TaskConfig
    model: str = Field("s", description="Tiny-model preset (xs, s, m) or a Hugging Face model directory.")
    base_seed: int = Field(0, ge=0, description="Seed of the base model (SFT warm start).")
    seed: int = Field(0, ge=0, description="Seed of the search and its stages.")
    params: dict[str, float] = Field(default_factory=dict, description="Root parameters (others: defaults).")
    search: SearchConfig = Field(default_factory=SearchConfig)
    budget: BudgetConfig
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    llm: LLMConfig = Field(default_factory=LLMConfig)


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names a config model allows at ``loc`` (a mapping's path in the file); [] where the path
    leaves the models (a free mapping such as ``search.grid``)."""
    for key in loc:
        field = model.model_fields.get(str(key))
        if field is None:
            return []
        nested = [a for a in (field.annotation, *get_args(field.annotation))
                  if isinstance(a, type) and issubclass(a, BaseModel)]
        if not nested:
            return []
        model = nested[0]
    return list(model.model_fields)


def one_line(e: ValidationError, where: str, model: type[BaseModel] | None = None) -> str:
    """A pydantic error as one line: field, value, what is allowed. With ``model``, a key the model does
    not know is named first, with the field it most likely misspells (a misspelled required key would
    otherwise read as that key missing)."""
    errors = e.errors()
    hints: dict[int, str] = {}
    for i, err in enumerate(errors):
        if model is not None and err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(err["loc"][-1]), _fields_at(model, err["loc"][:-1]), n=1)
            if close:
                hints[i] = f"; did you mean {close[0]!r}?"
    i = min(hints, default=0)
    err = errors[i]
    field = ".".join(str(p) for p in err["loc"])
    value = err.get("input")
    shown = "missing" if err["type"] == "missing" else f"{value!r}"
    msg = err["msg"].replace("Value error, ", "")
    return f"{where}{field}={shown} is not allowed: {msg}{hints.get(i, '')}"


def parse_config(raw: Any, where: str = "") -> ExperimentConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}expected a mapping with task, budget and search")
    try:
        cfg = ExperimentConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(one_line(e, where, ExperimentConfig)) from None
    _check_semantics(cfg, where)
    return cfg


def _yaml(value: Any) -> Any:
    """A value as the config file spells it (true, not True)."""
    return str(value).lower() if isinstance(value, bool) else value


def _check_semantics(cfg: ExperimentConfig, where: str) -> None:
    ex = cfg.executor
    for name, value, default in (("address", ex.address, None), ("cpus_per_worker", ex.cpus_per_worker, 1),
                                 ("gpus_per_worker", ex.gpus_per_worker, 0)):
        if ex.kind != "ray" and value != default:
            raise ConfigError(f"{where}executor.{name}={value!r} is not allowed with executor.kind={ex.kind!r}: "
                              "it applies to executor.kind='ray' only")
    if ex.device == "cpu" and ex.gpus_per_worker > 0:
        raise ConfigError(f"{where}executor.gpus_per_worker={ex.gpus_per_worker!r} is not allowed with "
                          "executor.device='cpu': the actors would hold GPUs they do not use")
    if ex.kind == "ray" and ex.device == "cuda" and ex.gpus_per_worker == 0:
        raise ConfigError(f"{where}executor.device='cuda' is not allowed with executor.gpus_per_worker=0: a Ray "
                          "actor trains on a GPU only if it reserves one (set executor.gpus_per_worker, e.g. 1)")
    for name, off in (("sibling_soup", False), ("scale_updates", False), ("lineages", 1)):
        value = getattr(cfg.search, name)
        if value != off and cfg.search.method not in ("mcts", "skill"):
            raise ConfigError(f"{where}search.{name}={_yaml(value)} is not allowed with search.method="
                              f"{cfg.search.method!r}: it applies to the tree searches (mcts, skill) only")
    if cfg.search.lineages > 1:
        for name, off in (("sibling_soup", False), ("scale_updates", False), ("dive_branching", None),
                          ("dive_patience", 0)):
            value = getattr(cfg.search, name)
            if value != off:
                raise ConfigError(f"{where}search.{name}={_yaml(value)} is not allowed with "
                                  f"search.lineages={cfg.search.lineages}: lineages grow one stage at a time "
                                  f"each and are averaged by the final soup only (set search.lineages: 1)")
    if cfg.search.lineage_start != "agent" and cfg.search.lineages == 1:
        raise ConfigError(f"{where}search.lineage_start={cfg.search.lineage_start!r} is not allowed with "
                          "search.lineages=1: it chooses how lineages start (set search.lineages >= 2)")
    if cfg.search.lineage_start == "grid" and cfg.search.prior is not None:
        raise ConfigError(f"{where}search.lineage_start='grid' is not allowed with search.prior: the prior's first "
                          "move starts every lineage (set search.lineage_start: start)")
    for name, off in (("dive_branching", None), ("dive_patience", 0)):
        value = getattr(cfg.search, name)
        if value != off and cfg.search.deepen != "improving":
            raise ConfigError(f"{where}search.{name}={value} is not allowed with search.deepen="
                              f"{cfg.search.deepen!r}: it applies to search.deepen='improving' only")
    if cfg.llm.curves and cfg.llm.backend == "llama":
        raise ConfigError(f"{where}llm.curves=true is not allowed with llm.backend='llama': the embedded model "
                          "reads text only (use the openai backend with a vision-capable model)")
    from llmzero.space import SpaceError
    from llmzero.tasks import TaskError, get_task, task_space

    try:
        task = get_task(cfg.task.name, difficulty=cfg.task.difficulty, data_seed=cfg.task.data_seed,
                        config=cfg.task.config, chat=cfg.task.chat)
        space = task_space(task)
        space.validate(cfg.params, where="params.")
        for name, values in cfg.search.grid.items():
            for v in values:
                space.validate({name: v}, where="search.grid.")
        for name in cfg.search.pbt.params:
            space[name]
    except (TaskError, SpaceError) as e:
        raise ConfigError(f"{where}{e}") from None
    from llmzero.models.tiny import PRESETS

    if cfg.task.chat and cfg.model in PRESETS:
        raise ConfigError(f"{where}task.chat=true is not allowed with model={cfg.model!r}: the tiny presets have no "
                          "chat template (use a Hugging Face chat model directory, or task.chat: false)")


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """Read an experiment file and apply dotted overrides (``{"search.method": "grid"}``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        raw = yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        raise ConfigError(f"{path.name}: does not parse as YAML{yaml_problem(e)}") from None
    if isinstance(raw, dict):
        apply_overrides(raw, overrides)
    return parse_config(raw, where=f"{path.name}: ")


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Set dotted keys (``search.method``) in a raw experiment mapping, in place; None leaves a key as is."""
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        node = raw
        *head, last = dotted.split(".")
        for k in head:
            node = node.setdefault(k, {})
        node[last] = value
    return raw
