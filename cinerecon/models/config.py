"""What every model configuration shares: a frozen dataclass of plain values that travels
inside its weights-only checkpoint as a dict."""

from __future__ import annotations

from dataclasses import asdict, fields


class PlainConfig:
    """Mixin for the frozen dataclass configs (UNetConfig, StyleGAN2Config, ...)."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        """Inverse of :meth:`to_dict`; unknown keys are an error (a typo must not pass silently)."""
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
        return cls(**d)
