"""What a sentence-transformers folder's own files say: its modules (refusing those the export cannot
reproduce), its pooling, and its prompts (config_sentence_transformers.json)."""

from __future__ import annotations

import json
from pathlib import Path

from compression.errors import ConfigError, ModelLayoutError

# sentence-transformers modules the export reproduces, by class name (the module path changed across
# releases: sentence_transformers.models.Pooling, ….sentence_transformer.modules.pooling.Pooling); any
# other module changes the output and is refused.
ST_TRANSFORMER, ST_POOLING, ST_NORMALIZE = "Transformer", "Pooling", "Normalize"
# Pooling config: the legacy boolean keys and the current pooling_mode names → our mode names.
ST_LEGACY_POOLING = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len",
}
ST_POOLING_NAMES = {"mean": "mean", "cls": "cls", "max": "max", "mean_sqrt_len_tokens": "mean_sqrt_len"}


def st_modules(path: Path) -> list[dict] | None:
    """modules.json of a sentence-transformers folder, after refusing modules the export cannot reproduce."""
    file = path / "modules.json"
    if not file.is_file():
        return None
    try:
        modules = json.loads(file.read_text())
    except ValueError as exc:
        raise ModelLayoutError(f"{file} is not valid JSON: {exc}") from exc
    for m in modules:
        if _module_class(m) not in (ST_TRANSFORMER, ST_POOLING, ST_NORMALIZE):
            raise ModelLayoutError(
                f"{file}: module {m.get('type')!r} is not supported; supported: Transformer, Pooling and Normalize"
            )
    return modules


def _module_class(module: dict) -> str:
    return str(module.get("type", "")).rsplit(".", 1)[-1]


def st_pooling(path: Path, modules: list[dict]):
    """The Pooling (mode, normalize) that a sentence-transformers folder's modules compute."""
    from compression.model import Pooling

    normalize = any(_module_class(m) == ST_NORMALIZE for m in modules)
    pool_dirs = [m.get("path", "") for m in modules if _module_class(m) == ST_POOLING]
    if not pool_dirs:
        raise ModelLayoutError(f"{path}/modules.json has no Pooling module: the sentence embedding is undefined")
    cfg_file = path / pool_dirs[0] / "config.json"
    cfg = json.loads(cfg_file.read_text()) if cfg_file.is_file() else {"pooling_mode": "mean"}
    if "pooling_mode" in cfg:
        named = cfg["pooling_mode"]
        named = [named] if isinstance(named, str) else list(named)
        modes = [ST_POOLING_NAMES.get(n, n) for n in named]
    else:
        modes = [mode for key, mode in ST_LEGACY_POOLING.items() if cfg.get(key)]
        modes += [k for k, v in cfg.items() if k.startswith("pooling_mode_") and v and k not in ST_LEGACY_POOLING]
    if len(modes) != 1 or modes[0] not in ST_POOLING_NAMES.values():
        raise ModelLayoutError(
            f"{cfg_file}: pooling {modes or 'none'} is not supported; supported: exactly one of "
            f"{', '.join(ST_POOLING_NAMES.values())}"
        )
    if cfg.get("include_prompt") is False:
        raise ModelLayoutError(f"{cfg_file}: include_prompt false is not supported")
    return Pooling(modes[0], normalize)


def choose_prompt(prompts: dict[str, str] | None, default: str | None, requested: str | None) -> str | None:
    """The prompt name a build embeds with and the service applies by default: the one requested
    ("none": no prompt), else the source's default, else its "query" prompt (e5 models have prompts but
    no default, and their symmetric tasks take "query: "), else none."""
    prompts = prompts or {}
    if requested == "none":
        return None
    if requested is not None:
        if requested not in prompts:
            raise ConfigError(f"--prompt {requested!r}: the model's prompts are {sorted(prompts) or 'none'} (or none)")
        return requested
    if default is not None:
        return default
    return "query" if prompts.get("query") else None


def st_prompts(path: Path) -> tuple[dict[str, str] | None, str | None]:
    """sentence-transformers' named prompts and default prompt name (config_sentence_transformers.json)."""
    file = path / "config_sentence_transformers.json"
    if not file.is_file():
        return None, None
    try:
        cfg = json.loads(file.read_text())
    except ValueError as exc:
        raise ModelLayoutError(f"{file} is not valid JSON: {exc}") from exc
    prompts = cfg.get("prompts") or None
    if prompts is not None and not (
        isinstance(prompts, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in prompts.items())
    ):
        raise ModelLayoutError(f"{file}: prompts must map names to strings")
    default = cfg.get("default_prompt_name")
    if default is not None and default not in (prompts or {}):
        raise ModelLayoutError(f"{file}: default_prompt_name {default!r} is not one of its prompts")
    return prompts, default
