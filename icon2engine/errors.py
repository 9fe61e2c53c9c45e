"""Exceptions the engine raises. Every message says what to change."""
from __future__ import annotations

__all__ = [
    "Icon2Error", "ConfigError", "ModelLoadError", "LayerDetectionError", "InputError", "StopRequested",
    "TemplateError", "JudgeError", "SynthesisShortfall", "ModelOutputError",
]


class Icon2Error(Exception):
    """Base class: an error a user can act on (the CLI prints it as one line)."""


class ConfigError(Icon2Error, ValueError):
    """A configuration value is missing, malformed or out of range."""


class ModelLoadError(Icon2Error):
    """A model could not be found or loaded."""


class LayerDetectionError(Icon2Error):
    """The decoder layers of a model could not be found automatically."""


class InputError(Icon2Error, ValueError):
    """The data given to a stage (instructions, pairs, files) cannot be used."""


class ModelOutputError(InputError):
    """The model's own, unsteered answers are degenerate: the cause is the model or its prompt
    format, not the steering strength."""


class StopRequested(Icon2Error):
    """Raised by a progress reporter to stop a stage between two batches."""


class TemplateError(ConfigError):
    """A tokenizer's chat template cannot be used the way a stage needs (e.g. cut for Magpie)."""


class JudgeError(Icon2Error):
    """A judge cannot be loaded or reached, or answered something that is not a score."""


class SynthesisShortfall(Icon2Error):
    """Synthesis ran out of attempts before enough instructions passed the cleaning rules.

    ``report`` holds the counts per drop reason; ``instructions`` what was kept so far.
    """

    def __init__(self, message: str, report: object = None, instructions: list[str] | None = None) -> None:
        super().__init__(message)
        self.report = report
        self.instructions = instructions or []
