"""Writes for the studio: `<entity>_<action>` with keyword-only arguments.

Every service checks the actor's role itself, so views, admin actions and tasks share one rule.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile, File
from django.db import models, transaction

from webapp.accounts.models import Team
from webapp.accounts.roles import Perm
from webapp.accounts.selectors import role_require
from webapp.limits import (
    DESCRIPTION_MAX,
    DIMENSION_NAME_MAX,
    FEATURE_INSTRUCTIONS_MAX,
    NAME_MAX,
    PROMPT_MAX,
    text_check,
)
from webapp.studio.instructions import instructions_count
from webapp.studio.model_checks import SOURCE_FIELDS, model_check_launch_problem, model_check_request
from webapp.studio.model_paths import MODEL_PATH_REFUSED, model_path_allowed, reward_model_problem
from webapp.studio.models import MAX_INSTRUCTIONS, Dimension, Judge, ModelSpec, Project, PromptPair, Run, Stage
from webapp.studio.presets import preset_get
from webapp.studio.selectors import run_name_suggest

EMBEDDED_MODEL_NAME = "SmolLM2-135M-Instruct (embedded)"

# Run fields a config dict may set (everything the run form edits except relations).
RUN_CONFIG_FIELDS = (
    "instruction_source",
    "n_instructions",
    "keep_fraction",
    "layer_start",
    "layer_end",
    "calibrate",
    "calibration_judge",
    "eval_judge",
    "gamma_plus",
    "gamma_minus",
    "steering_mode",
    "pairing",
    "max_new_tokens",
    "do_sample",
    "no_repeat_ngram_size",
    "repetition_penalty",
    "quality_gate",
    "temperature",
    "top_p",
    "seed",
    "require_review",
    "review_k",
    "dpo_beta",
    "dpo_learning_rate",
    "dpo_epochs",
    "dpo_batch_size",
    "dpo_use_lora",
    "dpo_lora_r",
    "dpo_max_length",
)


def _clean_name(name: str, *, what: str, max_length: int = NAME_MAX) -> str:
    name = " ".join(text_check(name, field="name", label=f"{what} name", max_length=max_length).split())
    if not name:
        raise ValidationError({"name": f"Give the {what} a name."})
    return name


def _description(value: str) -> str:
    return text_check(value, field="description", label="description", max_length=DESCRIPTION_MAX).strip()


# Projects ------------------------------------------------------------------------------------


def _project_name_check(*, team: Team, name: str, exclude_pk: int | None = None) -> None:
    clash = Project.objects.filter(team=team, name__iexact=name).exclude(pk=exclude_pk)
    if clash.exists():
        raise ValidationError({"name": f"This team already has a project called “{name}”."})


def project_create(*, team: Team, name: str, description: str = "", created_by: AbstractBaseUser) -> Project:
    role_require(user=created_by, team=team, perm=Perm.EDIT)
    name = _clean_name(name, what="project")
    _project_name_check(team=team, name=name)
    return Project.objects.create(team=team, name=name, description=_description(description), created_by=created_by)


def project_update(*, project: Project, name: str, description: str = "", actor: AbstractBaseUser) -> Project:
    role_require(user=actor, team=project.team_id, perm=Perm.EDIT)
    name = _clean_name(name, what="project")
    _project_name_check(team=project.team, name=name, exclude_pk=project.pk)
    project.name, project.description = name, _description(description)
    project.save(update_fields=["name", "description"])
    return project


# Dimensions ----------------------------------------------------------------------------------


def _dimension_name_check(*, project: Project, name: str, exclude_pk: int | None = None) -> None:
    if Dimension.objects.filter(project=project, name__iexact=name).exclude(pk=exclude_pk).exists():
        raise ValidationError({"name": f"This project already has a dimension called “{name}”."})


def pairs_validate(pairs: list[tuple[str, str]]) -> list[dict[str, str]]:
    """Per-row errors ({} for a good row). Raises nothing; an empty list of pairs is one error."""
    errors = []
    for positive, negative in pairs:
        row: dict[str, str] = {}
        try:
            PromptPair(positive=positive or "", negative=negative or "").clean()
        except ValidationError as error:
            row = {field: messages[0] for field, messages in error.message_dict.items()}
        errors.append(row)
    return errors


def _feature_instructions(value: str) -> str:
    return text_check(
        value, field="feature_instructions", label="list of instructions", max_length=FEATURE_INSTRUCTIONS_MAX
    ).strip()


def _pairs_check(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    if not pairs:
        raise ValidationError({"__all__": "Add at least one pair of system prompts."})
    if any(pairs_validate(pairs)):
        raise ValidationError({"__all__": "Every pair needs both a positive and a negative prompt, and they must differ."})
    return [(positive.strip(), negative.strip()) for positive, negative in pairs]


def _pairs_replace(*, dimension: Dimension, pairs: list[tuple[str, str]]) -> None:
    dimension.pairs.all().delete()
    PromptPair.objects.bulk_create(
        PromptPair(dimension=dimension, positive=positive, negative=negative, order=index)
        for index, (positive, negative) in enumerate(pairs)
    )


@transaction.atomic
def dimension_create(
    *,
    project: Project,
    name: str,
    pairs: list[tuple[str, str]],
    created_by: AbstractBaseUser,
    description: str = "",
    feature_instructions: str = "",
    preset_key: str = "",
    judge: Judge | None = None,
    refusal_allowed: bool = False,
) -> Dimension:
    role_require(user=created_by, team=project.team_id, perm=Perm.EDIT)
    name = _clean_name(name, what="dimension", max_length=DIMENSION_NAME_MAX)
    _dimension_name_check(project=project, name=name)
    pairs = _pairs_check(pairs)
    _judge_of_team(judge, team_id=project.team_id)
    dimension = Dimension.objects.create(
        project=project,
        judge=judge,
        name=name,
        description=_description(description),
        feature_instructions=_feature_instructions(feature_instructions),
        preset_key=preset_key,
        refusal_allowed=refusal_allowed,
    )
    _pairs_replace(dimension=dimension, pairs=pairs)
    return dimension


@transaction.atomic
def dimension_update(
    *,
    dimension: Dimension,
    name: str,
    pairs: list[tuple[str, str]],
    actor: AbstractBaseUser,
    description: str = "",
    feature_instructions: str = "",
    judge: Judge | None = None,
    refusal_allowed: bool = False,
) -> Dimension:
    role_require(user=actor, team=dimension.project.team_id, perm=Perm.EDIT)
    _judge_of_team(judge, team_id=dimension.project.team_id)
    dimension.judge = judge
    name = _clean_name(name, what="dimension", max_length=DIMENSION_NAME_MAX)
    _dimension_name_check(project=dimension.project, name=name, exclude_pk=dimension.pk)
    pairs = _pairs_check(pairs)
    dimension.name = name
    dimension.description = _description(description)
    dimension.feature_instructions = _feature_instructions(feature_instructions)
    dimension.refusal_allowed = refusal_allowed
    dimension.save()
    _pairs_replace(dimension=dimension, pairs=pairs)
    return dimension


def _judge_of_team(judge: Judge | None, *, team_id: int, field: str = "judge") -> None:
    if judge is not None and judge.team_id not in (None, team_id):
        raise ValidationError({field: "Choose one of this team's judges."})


def preset_judge(*, team: Team, spec: dict, created_by: AbstractBaseUser) -> Judge | None:
    """The judge a preset asks for: a built-in one by kind, or for the paper's criteria the team's
    LLM endpoint when it has one, and otherwise the run's own model asked about the criterion."""
    kind = spec.get("kind", "lexicon")
    if kind == "llm":
        endpoint = Judge.objects.filter(team=team, kind=Judge.Kind.LLM).order_by("pk").first()
        if endpoint is not None or spec.get("fallback") != "self":
            return endpoint
        criterion = spec.get("criterion") or "helpful, honest and harmless"
        builtin = Judge.objects.filter(team=None, kind=Judge.Kind.SELF, criterion=criterion).first()
        if builtin is not None:
            return builtin
        judge, _ = Judge.objects.get_or_create(
            team=team, name=f"Self: {criterion}"[:120], defaults={"kind": Judge.Kind.SELF, "criterion": criterion}
        )
        return judge
    return Judge.objects.filter(team=None, kind=kind, better=spec.get("better", "higher")).order_by("pk").first()


def dimension_create_from_preset(*, project: Project, key: str, created_by: AbstractBaseUser) -> Dimension:
    preset = preset_get(key)
    if preset is None:
        raise ValidationError(f"There is no preset called {key!r}.")
    role_require(user=created_by, team=project.team_id, perm=Perm.EDIT)
    return dimension_create(
        judge=preset_judge(team=project.team, spec=preset.judge, created_by=created_by),
        project=project,
        name=preset.name,
        description=preset.description,
        pairs=list(preset.prompt_pairs),
        preset_key=preset.key,
        refusal_allowed=preset.refusal_allowed,
        created_by=created_by,
    )


def dimension_delete(*, dimension: Dimension, actor: AbstractBaseUser) -> None:
    role_require(user=actor, team=dimension.project.team_id, perm=Perm.EDIT)
    used_by = list(dimension.runs.values_list("name", flat=True)[:3])
    if used_by:
        raise ValidationError(f"{dimension} is used by runs ({', '.join(used_by)}); it is kept so they stay reproducible.")
    dimension.delete()


# Models --------------------------------------------------------------------------------------


def model_embedded_ensure() -> ModelSpec:
    """The built-in SmolLM2 model every team can use (created on first need)."""
    model, _ = ModelSpec.objects.get_or_create(
        team=None,
        kind=ModelSpec.Kind.EMBEDDED,
        defaults={"name": EMBEDDED_MODEL_NAME, "num_layers": 30},
    )
    return model


def _model_save(model: ModelSpec) -> ModelSpec:
    model.name = _clean_name(model.name, what="model")
    if model.kind == ModelSpec.Kind.EMBEDDED:
        raise ValidationError({"kind": "The embedded model is built in; choose a local directory, GGUF file or hub id."})
    model.full_clean(validate_constraints=False)
    if model.kind in (ModelSpec.Kind.LOCAL_DIR, ModelSpec.Kind.GGUF) and not model_path_allowed(model.path_or_id):
        raise ValidationError({"path_or_id": MODEL_PATH_REFUSED})
    builtin = model.name.lower() == EMBEDDED_MODEL_NAME.lower()
    if builtin or ModelSpec.objects.filter(team=None, name__iexact=model.name).exists():
        raise ValidationError({"name": f"“{model.name}” is the name of a built-in model; choose another."})
    if ModelSpec.objects.filter(team=model.team, name__iexact=model.name).exclude(pk=model.pk).exists():
        raise ValidationError({"name": f"This team already has a model called “{model.name}”."})
    model.save()
    return model


def model_create(*, team: Team, created_by: AbstractBaseUser, **fields: Any) -> ModelSpec:
    """Add a team model and queue its check (webapp.studio.model_checks)."""
    role_require(user=created_by, team=team, perm=Perm.EDIT)
    model = _model_save(ModelSpec(team=team, **fields))
    model_check_request(model=model, actor=created_by)
    return model


def model_update(*, model: ModelSpec, actor: AbstractBaseUser, **fields: Any) -> ModelSpec:
    if model.team_id is None:
        raise ValidationError("Built-in models cannot be changed.")
    role_require(user=actor, team=model.team_id, perm=Perm.EDIT)
    before = [getattr(model, field) for field in SOURCE_FIELDS]
    for field, value in fields.items():
        setattr(model, field, value)
    model = _model_save(model)
    if [getattr(model, field) for field in SOURCE_FIELDS] != before:  # another model now: check it again
        model_check_request(model=model, actor=actor, again=True)
    return model


def model_delete(*, model: ModelSpec, actor: AbstractBaseUser) -> None:
    if model.team_id is None:
        raise ValidationError("Built-in models cannot be deleted.")
    role_require(user=actor, team=model.team_id, perm=Perm.EDIT)
    if model.runs.exists():
        raise ValidationError(f"{model} is used by runs; it is kept so they stay reproducible.")
    model.delete()


# Judges --------------------------------------------------------------------------------------

BUILTIN_JUDGES = (  # name, kind, better, criterion: what migrations 0007 and 0009 create
    ("Sentiment (VADER)", "lexicon", "higher", ""),
    ("Length: shorter is better", "length", "lower", ""),
    ("Length: longer is better", "length", "higher", ""),
    ("Formality", "formality", "higher", ""),
    ("Self: helpful, honest and harmless", "self", "higher", "helpful, honest and harmless"),
)


def judges_builtin_ensure() -> None:
    """The built-in judges, where a database lost them (a flushed test database, a hand reset)."""
    for name, kind, better, criterion in BUILTIN_JUDGES:
        Judge.objects.get_or_create(team=None, name=name, defaults={"kind": kind, "better": better, "criterion": criterion})


JUDGE_FIELDS = ("name", "kind", "better", "path", "base_url", "model_name", "api_key", "criterion", "protocol")


def _judge_save(judge: Judge, *, key_entered: bool) -> Judge:
    judge.name = _clean_name(judge.name, what="judge")
    judge.full_clean(validate_constraints=False)
    if judge.kind == Judge.Kind.REWARD_MODEL:
        if not model_path_allowed(judge.path):
            raise ValidationError({"path": MODEL_PATH_REFUSED})
        problem = reward_model_problem(judge.path)
        if problem:
            raise ValidationError({"path": problem})
    if Judge.objects.filter(team=None, name__iexact=judge.name).exclude(pk=judge.pk).exists():
        raise ValidationError({"name": f"“{judge.name}” is the name of a built-in judge; choose another."})
    if Judge.objects.filter(team=judge.team, name__iexact=judge.name).exclude(pk=judge.pk).exists():
        raise ValidationError({"name": f"This team already has a judge called “{judge.name}”."})
    # A key belongs to the address it was typed for: a key typed now is for this base URL; a
    # stored key whose base URL moved to another origin is cleared, never sent to the new one.
    origin = judge.base_url_origin if judge.kind == Judge.Kind.LLM else ""
    if key_entered:
        judge.api_key_origin = origin
    elif judge.api_key and (not origin or judge.api_key_origin != origin):
        judge.api_key, judge.api_key_origin = "", ""
    judge.save()
    return judge


def judge_create(*, team: Team, created_by: AbstractBaseUser, **fields: Any) -> Judge:
    role_require(user=created_by, team=team, perm=Perm.EDIT)
    unknown = set(fields) - set(JUDGE_FIELDS)
    if unknown:
        raise ValidationError(f"Unknown judge settings: {', '.join(sorted(unknown))}.")
    return _judge_save(Judge(team=team, **fields), key_entered=bool(fields.get("api_key")))


def judge_update(*, judge: Judge, actor: AbstractBaseUser, **fields: Any) -> Judge:
    """Change a team judge. A blank `api_key` keeps the stored one (the form never shows it) while
    the base URL stays on the same scheme, host and port; moving it elsewhere clears the stored key
    (type it again for the new address)."""
    if judge.team_id is None:
        raise ValidationError("Built-in judges cannot be changed.")
    role_require(user=actor, team=judge.team_id, perm=Perm.EDIT)
    key_entered = bool(fields.get("api_key"))
    if not key_entered:
        fields.pop("api_key", None)
    for field, value in fields.items():
        if field not in JUDGE_FIELDS:
            raise ValidationError(f"Unknown judge setting: {field}.")
        setattr(judge, field, value)
    return _judge_save(judge, key_entered=key_entered)


def judge_delete(*, judge: Judge, actor: AbstractBaseUser) -> None:
    if judge.team_id is None:
        raise ValidationError("Built-in judges cannot be deleted.")
    role_require(user=actor, team=judge.team_id, perm=Perm.EDIT)
    if Run.objects.filter(models.Q(calibration_judge=judge) | models.Q(eval_judge=judge)).exists():
        raise ValidationError(f"{judge} is used by runs; it is kept so they stay reproducible.")
    judge.delete()


# Runs ----------------------------------------------------------------------------------------


def _stage_status(kind: str, run: Run) -> str:
    skipped = (
        (kind == Stage.Kind.CALIBRATE and not run.calibrate)
        or (kind == Stage.Kind.SYNTHESIZE and run.instruction_source == Run.InstructionSource.UPLOAD)
        or (kind == Stage.Kind.REVIEW and not run.require_review)
    )
    return Stage.Status.SKIPPED if skipped else Stage.Status.PENDING


def instructions_file_check(upload: File) -> int:
    """Size, extension and content of an uploaded instruction list, read a line at a time;
    returns how many instructions it holds."""
    limit = settings.ICON2_MAX_UPLOAD_MB * 1024 * 1024
    if upload.size is not None and upload.size > limit:
        raise ValidationError({"instructions_file": f"The file is larger than {settings.ICON2_MAX_UPLOAD_MB} MB."})
    upload.seek(0)
    try:
        return instructions_count(name=upload.name or "", stream=upload)
    except ValidationError as error:
        raise ValidationError({"instructions_file": error.messages}) from None
    finally:
        upload.seek(0)


@transaction.atomic
def run_create(
    *,
    project: Project,
    created_by: AbstractBaseUser,
    model: ModelSpec,
    dimensions: list[Dimension],
    config: dict[str, Any],
) -> Run:
    """A draft run with its eight stages. `config` holds run settings (see RUN_CONFIG_FIELDS),
    optionally `name` and, for uploads, `instructions_file` (a File)."""
    role_require(user=created_by, team=project.team_id, perm=Perm.EDIT)
    config = dict(config)
    upload = config.pop("instructions_file", None)
    name = _clean_name(config.pop("name", "") or run_name_suggest(project=project), what="run")
    unknown = set(config) - set(RUN_CONFIG_FIELDS)
    if unknown:
        raise ValidationError(f"Unknown run settings: {', '.join(sorted(unknown))}.")

    errors: dict[str, list[str]] = {}
    if model.team_id not in (None, project.team_id):
        errors["model"] = ["Choose one of this team's models."]
    dimensions = list(dimensions)
    for field in ("calibration_judge", "eval_judge"):
        judge = config.get(field)
        if judge is not None and judge.team_id not in (None, project.team_id):
            errors[field] = ["Choose one of this team's judges."]
        elif judge is None:  # blank: how the (first) dimension is measured, else the site default
            config[field] = next((d.judge for d in sorted(dimensions, key=lambda d: d.pk) if d.judge_id), None)
    if not dimensions:
        errors["dimensions"] = ["Choose at least one dimension."]
    elif any(dimension.project_id != project.pk for dimension in dimensions):
        errors["dimensions"] = ["Choose dimensions of this project."]
    if project.runs.filter(name__iexact=name).exists():
        errors["name"] = [f"This project already has a run called “{name}”."]

    run = Run(project=project, model=model, name=name, created_by=created_by, **config)
    try:
        run.full_clean(exclude=["instructions_file"], validate_constraints=False)
    except ValidationError as error:
        for field, messages in error.message_dict.items():
            errors.setdefault(field, []).extend(messages)

    instructions = 0
    if run.instruction_source == Run.InstructionSource.UPLOAD:
        if upload is None:
            errors.setdefault("instructions_file", []).append("Upload a .jsonl, .csv or .txt file of instructions.")
        else:
            try:
                instructions = instructions_file_check(upload)
            except ValidationError as error:
                errors.setdefault("instructions_file", []).extend(error.message_dict["instructions_file"])
            if instructions > MAX_INSTRUCTIONS:
                errors.setdefault("instructions_file", []).append(
                    f"The file has {instructions:,} instructions; a run takes at most {MAX_INSTRUCTIONS:,}."
                )
    if errors:
        raise ValidationError(errors)

    if instructions:
        run.n_instructions = instructions
    run.save()
    run.dimensions.set(dimensions)
    if upload is not None and run.instruction_source == Run.InstructionSource.UPLOAD:
        suffix = PurePath(upload.name).suffix.lower()
        upload.seek(0)
        run.instructions_file.save(
            f"teams/{project.team_id}/runs/{run.pk}/instructions{suffix}", ContentFile(upload.read()), save=True
        )
    Stage.objects.bulk_create(
        Stage(run=run, kind=kind, order=index, status=_stage_status(kind, run))
        for index, kind in enumerate(Stage.ORDER, start=1)
    )
    return run


def _run_begin(run_id: int) -> None:
    from webapp.jobs.services import run_advance

    run_advance(run_id=run_id)


def run_launch(*, run: Run, actor: AbstractBaseUser, override_model_check: bool = False) -> Run:
    """Queue a draft run; once this commits, its first stage's chunks are made and sent to the
    workers (webapp.jobs.services.run_advance), so a worker always sees the committed run.

    A run whose model is missing or whose judge cannot be reached is refused here, with the reason,
    before any model stage runs (webapp.studio.preflight). So is a run on a team model whose check
    failed or has not finished, unless ``override_model_check``; a model never checked gets its
    check queued now (webapp.studio.model_checks)."""
    from webapp.studio.preflight import run_launch_problems

    role_require(user=actor, team=run.project.team_id, perm=Perm.EDIT)
    if run.status != Run.Status.DRAFT:
        raise ValidationError("Only a draft run can be launched.")
    problems = run_launch_problems(run)
    # Outside the launch's transaction: a check queued here stays queued although the launch is refused.
    if not override_model_check:
        problems += [p for p in [model_check_launch_problem(model=run.model, actor=actor)] if p]
    if problems:
        raise ValidationError(problems)
    return _run_queue(run=run)


@transaction.atomic
def _run_queue(*, run: Run) -> Run:
    updated = Run.objects.filter(pk=run.pk, status=Run.Status.DRAFT).update(status=Run.Status.QUEUED)
    if not updated:
        raise ValidationError("Only a draft run can be launched.")
    run.stages.filter(status=Stage.Status.PENDING).update(status=Stage.Status.QUEUED)
    run_id = run.pk
    transaction.on_commit(lambda: _run_begin(run_id))
    run.refresh_from_db()
    return run


@transaction.atomic
def run_cancel(*, run: Run, actor: AbstractBaseUser) -> Run:
    role_require(user=actor, team=run.project.team_id, perm=Perm.EDIT)
    active = [Run.Status.DRAFT, Run.Status.QUEUED, Run.Status.RUNNING, Run.Status.PAUSED]
    updated = Run.objects.filter(pk=run.pk, status__in=active).update(status=Run.Status.CANCELLED)
    if not updated:
        raise ValidationError("This run has already finished.")
    run.stages.filter(
        status__in=[Stage.Status.PENDING, Stage.Status.QUEUED, Stage.Status.RUNNING]
    ).update(status=Stage.Status.CANCELLED)
    run.refresh_from_db()
    return run
