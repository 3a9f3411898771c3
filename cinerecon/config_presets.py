"""Presets: the full default configuration of a run, chosen by the top-level key `preset`.

A run's configuration is resolved once, while the Snakefile is parsed:

    effective = deep_merge(config/presets/{preset}.yaml, the user's config)

where the user's config is what Snakemake was given on its command line (every --configfile,
merged in order, then --config), and `preset` is the user's choice (default: demo). Nothing
else is merged in: a `preset: paper` run never sees a value of the demo preset, and the
demo preset's 10 synthetic subjects never reach a run that names its own cohort through a
paper preset. Mappings merge key by key; lists and scalars are replaced whole (as Snakemake's
own config merging does), so `inversion: {steps: [0, 1000]}` replaces the preset's step list
and keeps its other inversion keys.

`write_effective_config` records the result under `{results}/config/` when a run starts
(the Snakefile's `onstart:`, never while the DAG is built and never in a dry run).
"""

from __future__ import annotations

import copy
import os
import tempfile
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

import yaml

from cinerecon.config_checks import ConfigError, config_error

DEFAULT_PRESET = "demo"
# Keys a run cannot do without and that a preset may leave to the user (the paper preset
# has no cohort and no results folder: they are the user's data and disk).
USER_KEYS = ("results", "cohort")


def deep_merge(base: Mapping, over: Mapping) -> dict:
    """A new dict: `over` merged into a deep copy of `base`. Mappings merge recursively; any
    other value of `over` (list, scalar, None) replaces the base's value whole."""
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def available_presets(presets_dir: str | Path) -> list[str]:
    """Names of the preset files `{presets_dir}/{name}.yaml`, sorted."""
    return sorted(p.stem for p in Path(presets_dir).glob("*.yaml"))


def preset_path(name, presets_dir: str | Path) -> Path:
    """The preset file of `name`; ConfigError naming the key for an unknown name."""
    known = available_presets(presets_dir)
    if not isinstance(name, str) or name not in known:
        raise config_error("preset", f"unknown preset {name!r}; use one of {known} "
                                     f"(the files in {presets_dir})")
    return Path(presets_dir) / f"{name}.yaml"


def load_preset(name, presets_dir: str | Path) -> dict:
    """The preset's full configuration (its own `preset` key, if any, must name itself)."""
    path = preset_path(name, presets_dir)
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: a preset must be a mapping of config keys, got {type(values).__name__}")
    if values.get("preset", name) != name:
        raise ConfigError(f"{path}: says `preset: {values['preset']}` but is the {name!r} preset")
    return values


def resolve_config(user: Mapping | None, presets_dir: str | Path) -> dict:
    """The effective configuration: the chosen preset with `user` deep-merged over it.

    user: the keys the user set (Snakemake's --configfile values, then --config). Its
    `preset` (default demo) picks `{presets_dir}/{preset}.yaml`. The result starts with
    `preset`. A key of USER_KEYS that neither the preset nor the user sets is an error
    naming it (the paper preset has no cohort: a real run names its own).
    """
    user = dict(user or {})
    name = user.get("preset", DEFAULT_PRESET)
    path = preset_path(name, presets_dir)
    merged = deep_merge(load_preset(name, presets_dir), user)
    merged.pop("preset", None)
    for key in USER_KEYS:
        if merged.get(key) in (None, "", {}):
            raise config_error(key, f"missing: the {name!r} preset ({path}) has no {key}, so your config "
                                    f"(--configfile) must set it; see config/ukbb_nifti.example.yaml "
                                    f"and config/ukbb_dicom.example.yaml")
    return {"preset": name, **merged}


# ---- from a Snakefile -------------------------------------------------------------------------
def user_config(workflow) -> dict:
    """The keys the user gave Snakemake: its --configfile files merged in order, then --config
    (Snakemake's config_settings.overwrite_config; {} when none were given)."""
    settings = getattr(workflow, "config_settings", None)
    return copy.deepcopy(dict(getattr(settings, "overwrite_config", None) or {}))


def config_sources(workflow) -> list[str]:
    """What the user gave, as command-line words: `--configfile PATH` and `--config KEY=VALUE`."""
    settings = getattr(workflow, "config_settings", None)
    files = [f"--configfile {Path(f)}" for f in getattr(settings, "configfiles", None) or ()]
    values = [f"--config {key}={value!r}" for key, value in dict(getattr(settings, "config", None) or {}).items()]
    return files + values


def resolve_workflow_config(config: dict, workflow, presets_dir: str | Path) -> dict:
    """Replace Snakemake's `config` (in place, so every rule file sees it) by the preset chosen
    by the user's keys with those keys merged over it; return it."""
    resolved = resolve_config(user_config(workflow), presets_dir)
    config.clear()
    config.update(resolved)
    return config


# ---- the record of a run ----------------------------------------------------------------------
def effective_config_text(config: Mapping, sources: list[str], started: datetime) -> str:
    """The effective configuration as YAML (usable as a --configfile to repeat the run), with a
    header saying when the run started, which preset it used and what the user gave."""
    header = [
        "# cinerecon: the effective configuration of a run (written when it started)",
        f"# started: {started.astimezone(timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')}",
        f"# preset: {config.get('preset', DEFAULT_PRESET)} (config/presets/{config.get('preset', DEFAULT_PRESET)}.yaml), "
        f"with the user's config merged over it: {'; '.join(sources) if sources else 'none (the preset alone)'}",
        "# Repeat the run with:  snakemake --configfile THIS_FILE ...",
    ]
    body = yaml.dump(_plain(config), Dumper=_ConfigDumper, sort_keys=False, width=100)
    return "\n".join(header) + "\n" + body


class _ConfigDumper(yaml.SafeDumper):
    """Mappings in block style, lists on one line, as the preset files are written."""


_ConfigDumper.add_representer(
    list, lambda dumper, value: dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=True))


def write_effective_config(config: Mapping, results: str | Path, sources: list[str],
                           started: datetime | None = None) -> tuple[Path, Path]:
    """Write `{results}/config/effective.yaml` (the latest run's) and a copy kept per run,
    `{results}/config/runs/{UTC start time}.yaml`; return both paths. Each file appears whole
    (written to a temporary file, then renamed)."""
    started = started or datetime.now(timezone.utc)
    text = effective_config_text(config, sources, started)
    folder = Path(results) / "config"
    runs = folder / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    stamp = started.astimezone(timezone.utc).strftime("%Y-%m-%dT%H-%M-%SZ")
    kept = runs / f"{stamp}.yaml"
    n = 1
    while kept.exists():  # two runs started in the same second
        kept = runs / f"{stamp}-{n}.yaml"
        n += 1
    _write_atomic(kept, text)
    latest = folder / "effective.yaml"
    _write_atomic(latest, text)
    return latest, kept


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _plain(value):
    """Snakemake's config may hold its own Mapping/sequence types: plain dicts and lists for YAML."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
