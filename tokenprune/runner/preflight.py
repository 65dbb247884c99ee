"""The pre-flight: before any cell runs, read each model's configs (never its weights) and check every
cell against them; all problems are reported at once, each with its place in the YAML.

Checked:
  * the checkpoint: a bundled ``zoo:`` name, an existing local directory with a config.json, or a hub
    id whose config.json is in the local Hugging Face cache or, when online, on the hub;
  * the prune layer K of llm-stage strategies: 1 <= K < the LLM's decoder layers;
  * absolute budgets against the most visual tokens a sample can have: the model adapter says what one
    image becomes (exactly, for fixed-grid models like LLaVA-1.5; at most, for dynamic-resolution and
    anyres models, from the image processor's limits), the benchmark how many images a sample shows.

Not checked: cells on video benchmarks, and adapters or benchmarks that cannot tell their counts.
Under the maximum of a dynamic-resolution model, a sample with fewer visual tokens than the budget
keeps all of them (the engine's rule); the cell's ``tokens.all_kept_samples`` counts such samples.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import ConfigError, TokenpruneError
from .grid import Grid, _Problems, strategy_place


def missing_local_path(checkpoint: str) -> bool:
    """True when ``checkpoint`` is meant as a local path (it starts with / . ~ or is no valid hub id)
    and nothing is there."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if Path(checkpoint).expanduser().exists():
        return False
    if checkpoint.startswith(("/", ".", "~")):
        return True
    try:
        validate_repo_id(checkpoint)
    except HFValidationError:
        return True
    return False


def _hub_file(repo: str, filename: str, required: bool) -> str | None:
    """A file of hub checkpoint ``repo``: from the local cache, else downloaded when online.
    Raises ConfigError for a required file that cannot be had; None for an optional one."""
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    def absent():
        if required:
            raise ConfigError(f"hub checkpoint {repo!r} has no {filename}: not a transformers model")

    cached = try_to_load_from_cache(repo, filename)
    if isinstance(cached, str):
        return cached
    if cached is not None:  # the cache knows the repo has no such file
        return absent()
    if constants.is_offline_mode():
        if required:
            raise ConfigError(f"hub checkpoint {repo!r} is not in the local Hugging Face cache "
                              f"({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE is set: download it first "
                              f"(`hf download {repo}`) or unset HF_HUB_OFFLINE")
        return None
    try:
        return hf_hub_download(repo, filename)
    except LocalEntryNotFoundError as exc:  # the hub is unreachable and the cache has not got it
        if required:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ConfigError(f"cannot read the config of hub checkpoint {repo!r}: it is not in the local "
                              f"Hugging Face cache ({constants.HF_HUB_CACHE}) and the hub cannot be reached "
                              f"({first})") from None
        return None
    except EntryNotFoundError:
        return absent()
    except RepositoryNotFoundError:
        raise ConfigError(f"checkpoint {repo!r} is neither a local directory nor a model on the Hugging Face "
                          "hub (a private or gated one needs `hf auth login`)") from None


def read_configs(checkpoint: str) -> tuple[object | None, dict]:
    """(the model config, or None when transformers does not know its type; the preprocessor config
    as a dict, {} when absent). Raises ConfigError when the checkpoint cannot be found."""
    from transformers import AutoConfig

    from .execute import resolve_checkpoint

    local = Path(resolve_checkpoint(checkpoint)).expanduser()
    if local.is_dir():
        config_file = local / "config.json"
        if not config_file.is_file():
            raise ConfigError(f"checkpoint {checkpoint!r}: {local} has no config.json (not a saved model)")
        pre_file = local / "preprocessor_config.json"
        pre_file = str(pre_file) if pre_file.is_file() else None
    elif local.exists():
        raise ConfigError(f"checkpoint {checkpoint!r} is a file; give the model's directory")
    else:
        config_file = _hub_file(checkpoint, "config.json", required=True)
        pre_file = _hub_file(checkpoint, "preprocessor_config.json", required=False)
    try:
        config = AutoConfig.from_pretrained(str(Path(config_file).parent))
    except (ValueError, KeyError):  # a model type this transformers does not know: nothing to check
        config = None
    preprocessor = json.loads(Path(pre_file).read_text()) if pre_file else {}
    return config, preprocessor


def decoder_depth(config) -> int | None:
    """Decoder layers of the LLM of a VLM config."""
    try:
        return int(config.get_text_config().num_hidden_layers)
    except (AttributeError, TypeError):
        return None


class _Places:
    """Where a model, strategy or budget of the cells is written in the (effective, overridden) grid."""

    def __init__(self, grid: Grid):
        self.raw = grid.raw
        self.strategy_places = grid.strategy_places  # recorded as the grid expanded each entry
        self.models = list(dict.fromkeys(c.model for c in grid.cells))

    def model(self, spec) -> str:
        return f"models[{self.models.index(spec)}]"

    def strategy(self, cell) -> str:
        return self.strategy_places.get(strategy_place(cell.strategy, cell.label, cell.params), "strategies")

    def budget(self, budget: int) -> str:
        budgets = self.raw.get("budgets")
        if isinstance(budgets, list):
            for i, item in enumerate(budgets):
                if item == budget or item == {"count": budget}:
                    return f"budgets[{i}]"
        return "budgets.count" if isinstance(budgets, dict) else "budgets"


def check(grid: Grid, *, budgets: bool = True):
    """Raise one ConfigError listing every problem of the grid's cells against its models' configs.
    ``budgets=False`` (--smoke, whose model the budgets were not written for) leaves budgets unchecked."""
    problems = _Problems(str(grid.path or grid.name))
    places = _Places(grid)
    found: dict[tuple[str, str], None] = {}  # each problem once, however many cells share it
    facts = {}
    for model in places.models:
        try:
            facts[model] = read_configs(model.checkpoint)
        except ConfigError as exc:
            found[(f"{places.model(model)}.checkpoint", str(exc))] = None
    images: dict = {}
    for cell in grid.cells:
        config, preprocessor = facts.get(cell.model, (None, {}))
        if config is None or cell.strategy == "vanilla":
            continue
        model = f"{places.model(cell.model)} ({cell.model.checkpoint})"
        for problem in (_layer_problem(cell, config, model, places),
                        budgets and _budget_problem(cell, config, preprocessor, model, places, images)):
            if problem:
                found[problem] = None
    for where, message in found:
        problems.add(where, message)
    try:
        problems.raise_if_any()
    except ConfigError as exc:
        raise ConfigError(f"{exc}\n(checked against the models' configs before the run; --no-preflight skips "
                          "this)") from None


def _layer_problem(cell, config, model: str, places: _Places):
    from ..api import strategy_class

    layer = strategy_class(cell.strategy)(**cell.params).prune_layer
    depth = decoder_depth(config)
    if layer is not None and depth is not None and layer >= depth:
        return (f"{places.strategy(cell)}.params.layer",
                f"{cell.label or cell.strategy} prunes at decoder layer K={layer}, but {model} has {depth} "
                f"decoder layers: K must be between 1 and {depth - 1}")
    return None


def _budget_problem(cell, config, preprocessor: dict, model: str, places: _Places, images: dict):
    """An absolute budget above the most visual tokens a sample can have (``images`` caches, per
    benchmark, the most images a sample shows)."""
    from .. import registry
    from ..models import adapter_class

    if cell.budget is None:
        return None
    key = cell.benchmark_key()
    if key not in images:
        try:
            images[key] = registry.lookup("benchmarks", cell.benchmark)(**cell.benchmark_options).max_images()
        except TokenpruneError:
            images[key] = None  # the grid's own checks reported it
    try:
        per_image = adapter_class(cell.model.adapter).max_visual_tokens(config, preprocessor)
    except (AttributeError, TypeError, ValueError):
        per_image = None  # a config without the fields the adapter reads: the run will say more
    if not images[key] or per_image is None:
        return None
    most, exact = per_image
    if cell.budget <= most * images[key]:
        return None
    what = (f"every image becomes exactly {most} visual tokens" if exact else
            f"an image becomes at most {most} visual tokens (the image processor's largest size)")
    shown = f"{images[key]} images" if images[key] > 1 else "one image"
    return (places.budget(cell.budget),
            f"budget {cell.budget} is more than a sample of {cell.benchmark} can have on {model}: it shows at "
            f"most {shown} and {what}; such a budget would keep every token")
