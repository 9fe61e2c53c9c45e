"""The table of every team-scoped URL, what it needs, and how to call it (shared by access tests)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from webapp.accounts.models import Invite
from webapp.accounts.roles import Perm
from webapp.studio.models import ModelSpec

from .conftest import TeamWorld


def run_form_data(world: TeamWorld, **overrides: Any) -> dict[str, Any]:
    data = {
        "name": "",
        "model": ModelSpec.objects.get(team__isnull=True).pk,
        "dimensions": [world.dimension.pk],
        "instruction_source": "synthesize",
        "n_instructions": 64,
        "keep_fraction": 0.25,
        "layer_start": "",
        "layer_end": "",
        "gamma_plus": 0.05,
        "gamma_minus": -0.03,
        "steering_mode": "add",
        "pairing": "two_sided",
        "max_new_tokens": 96,
        "no_repeat_ngram_size": 3,
        "quality_gate": "on",
        "repetition_penalty": 1.0,
        "temperature": 0.7,
        "top_p": 0.95,
        "seed": 0,
        "require_review": "on",
        "review_k": 1,
        "dpo_beta": 0.1,
        "dpo_learning_rate": 5e-5,
        "dpo_epochs": 1,
        "dpo_batch_size": 4,
        "dpo_use_lora": "on",
        "dpo_lora_r": 8,
        "dpo_max_length": 256,
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def _invite(world: TeamWorld) -> Invite:
    owner = world.team.memberships.get(role="owner").user
    return Invite.objects.create(team=world.team, role="viewer", created_by=owner)


def _judge(world: TeamWorld):
    from webapp.studio.models import Judge

    judge, _ = Judge.objects.get_or_create(team=world.team, name="Team LLM", defaults={
        "kind": "llm", "base_url": "http://127.0.0.1:8000/v1", "model_name": "m", "criterion": "Which is better?"})
    return judge


def _probe(world: TeamWorld):
    from webapp.jobs.models import Probe

    probe, _ = Probe.objects.get_or_create(run=world.run, dimension=world.dimension, defaults={"instruction": "Say hi.", "gamma": 0.2})
    return probe


def _pair(world: TeamWorld):
    from webapp.jobs.models import Instruction, Pair

    instruction, _ = Instruction.objects.get_or_create(
        run=world.run, index=999, defaults={"text": "Say hi.", "source": "synthesized", "kept": True, "rank": 0}
    )
    pair, _ = Pair.objects.get_or_create(
        instruction=instruction,
        defaults={"run": world.run, "dimension": world.dimension, "chosen": "Hi!", "rejected": "No.", "gamma_plus": 0.05, "gamma_minus": -0.05},
    )
    return pair


def _viewer_membership(world: TeamWorld):
    return world.team.memberships.exclude(role="owner").order_by("-pk").first() or world.team.memberships.first()


@dataclass(frozen=True)
class Route:
    name: str
    perm: Perm
    kwargs: Callable[[TeamWorld], dict] = field(default=lambda w: {})
    method: str = "GET"
    data: Callable[[TeamWorld], dict] | None = None
    label: str = ""

    @property
    def id(self) -> str:
        return f"{self.method} {self.name}{' ' + self.label if self.label else ''}"


def _validate(world: TeamWorld) -> dict:
    return {"_validate": "1", "name": "Helpful", "positive": ["a"], "negative": ["b"], "row": ["r1"]}


# Every URL that reaches into one team's objects. Non-members must get 404 from all of them.
TEAM_ROUTES: list[Route] = [
    Route("studio:project", Perm.READ, lambda w: {"pk": w.project.pk}),
    Route("studio:dimension", Perm.READ, lambda w: {"pk": w.dimension.pk}),
    Route("studio:run", Perm.READ, lambda w: {"pk": w.run.pk}),
    Route("studio:run_compare", Perm.READ, lambda w: {"pk": w.project.pk}),
    Route("jobs:run_directions", Perm.READ, lambda w: {"pk": w.run.pk}),
    Route("jobs:run_filter", Perm.READ, lambda w: {"pk": w.run.pk}),
    Route("jobs:run_calibration", Perm.READ, lambda w: {"pk": w.run.pk}),
    Route("jobs:run_training", Perm.READ, lambda w: {"pk": w.run.pk}),
    Route("jobs:run_cost", Perm.READ, lambda w: {"pk": w.run.pk}),
    Route("jobs:run_playground", Perm.READ, lambda w: {"pk": w.run.pk}),
    Route("jobs:probe", Perm.READ, lambda w: {"pk": _probe(w).pk}),
    Route("jobs:run_filter", Perm.EDIT, lambda w: {"pk": w.run.pk}, "POST", lambda w: {"threshold": "0.5"}),
    Route("jobs:run_playground", Perm.REVIEW, lambda w: {"pk": w.run.pk}, "POST",
          lambda w: {"instruction": "Say hi.", "dimension": w.dimension.pk, "gamma": "0.2", "max_new_tokens": "8"}),
    Route("accounts:team_settings", Perm.READ, lambda w: {"team_pk": w.team.pk}),
    Route("accounts:team_switch", Perm.READ, method="POST", data=lambda w: {"team": w.team.pk}),
    Route("studio:project_edit", Perm.EDIT, lambda w: {"pk": w.project.pk}),
    Route(
        "studio:project_edit", Perm.EDIT, lambda w: {"pk": w.project.pk}, "POST", lambda w: {"name": "Renamed", "description": ""}
    ),
    Route("studio:dimension_new", Perm.EDIT, lambda w: {"project_pk": w.project.pk}),
    Route(
        "studio:dimension_new",
        Perm.EDIT,
        lambda w: {"project_pk": w.project.pk},
        "POST",
        lambda w: {"name": "Honesty", "positive": ["You are honest."], "negative": ["You are dishonest."]},
    ),
    Route("studio:dimension_new", Perm.EDIT, lambda w: {"project_pk": w.project.pk}, "POST", _validate, "inline check"),
    Route("studio:dimension_pair_row", Perm.EDIT, lambda w: {"project_pk": w.project.pk}),
    Route("studio:dimension_preset", Perm.EDIT, lambda w: {"project_pk": w.project.pk}, "POST", lambda w: {"key": "honesty"}),
    Route(
        "studio:dimension",
        Perm.EDIT,
        lambda w: {"pk": w.dimension.pk},
        "POST",
        lambda w: {"name": "Helpfulness", "positive": ["Be useful."], "negative": ["Be useless."]},
    ),
    Route("studio:dimension", Perm.EDIT, lambda w: {"pk": w.dimension.pk}, "POST", _validate, "inline check"),
    Route("studio:dimension_delete", Perm.EDIT, lambda w: {"pk": w.dimension.pk}, "POST", lambda w: {}),
    Route("studio:model_edit", Perm.EDIT, lambda w: {"pk": w.model.pk}),
    Route(
        "studio:model_edit",
        Perm.EDIT,
        lambda w: {"pk": w.model.pk},
        "POST",
        lambda w: {"name": "Local Llama 2", "kind": "local_dir", "path_or_id": "/models/llama2"},
    ),
    Route("studio:model_check", Perm.EDIT, lambda w: {"pk": w.model.pk}, "POST", lambda w: {}),
    Route("studio:model_delete", Perm.EDIT, lambda w: {"pk": w.model.pk}, "POST", lambda w: {}),
    Route("studio:judge_edit", Perm.EDIT, lambda w: {"pk": _judge(w).pk}),
    Route("studio:judge_edit", Perm.EDIT, lambda w: {"pk": _judge(w).pk}, "POST", lambda w: {
        "name": "Team LLM 2", "kind": "llm", "better": "higher", "base_url": "http://127.0.0.1:8000/v1", "model_name": "m",
        "criterion": "Which is better?"}),
    Route("studio:judge_delete", Perm.EDIT, lambda w: {"pk": _judge(w).pk}, "POST", lambda w: {}),
    Route("studio:run_new", Perm.EDIT, lambda w: {"project_pk": w.project.pk}),
    Route("studio:run_new", Perm.EDIT, lambda w: {"project_pk": w.project.pk}, "POST", run_form_data),
    Route("studio:run_launch", Perm.EDIT, lambda w: {"pk": w.run.pk}, "POST", lambda w: {}),
    Route("studio:run_cancel", Perm.EDIT, lambda w: {"pk": w.run.pk}, "POST", lambda w: {}),
    Route("jobs:stage_retry", Perm.EDIT, lambda w: {"pk": w.run.pk, "kind": "extract"}, "POST", lambda w: {}),
    Route("jobs:review_finish", Perm.EDIT, lambda w: {"pk": w.run.pk}, "POST", lambda w: {}),
    Route("review:queue", Perm.REVIEW, lambda w: {"pk": w.run.pk}),
    Route("review:verdict", Perm.REVIEW, lambda w: {"pk": w.run.pk}, "POST", lambda w: {"assignment": "0", "choice": "left"}),
    Route("review:undo", Perm.REVIEW, lambda w: {"pk": w.run.pk}, "POST", lambda w: {}),
    Route("review:edit", Perm.REVIEW, lambda w: {"pk": w.run.pk}, "POST", lambda w: {"assignment": "0", "side": "left", "text": "x"}),
    Route("review:lead", Perm.EDIT, lambda w: {"pk": w.run.pk}),
    Route(
        "review:resolve",
        Perm.EDIT,
        lambda w: {"pk": w.run.pk, "pair_pk": _pair(w).pk},
        "POST",
        lambda w: {"outcome": "confirm", "version": "0"},
    ),
    Route("review:download", Perm.EDIT, lambda w: {"pk": w.run.pk, "fmt": "jsonl"}),
    Route("review:download", Perm.EDIT, lambda w: {"pk": w.run.pk, "fmt": "parquet"}),
    Route("review:download", Perm.EDIT, lambda w: {"pk": w.run.pk, "fmt": "card"}),
    Route("accounts:team_settings", Perm.MANAGE, lambda w: {"team_pk": w.team.pk}, "POST", lambda w: {"name": "Renamed team"}),
    Route(
        "accounts:member_role",
        Perm.MANAGE,
        lambda w: {"team_pk": w.team.pk, "membership_pk": _viewer_membership(w).pk},
        "POST",
        lambda w: {"role": "annotator"},
    ),
    Route(
        "accounts:member_remove",
        Perm.MANAGE,
        lambda w: {"team_pk": w.team.pk, "membership_pk": _viewer_membership(w).pk},
        "POST",
        lambda w: {},
    ),
    Route(
        "accounts:invite_new",
        Perm.MANAGE,
        lambda w: {"team_pk": w.team.pk},
        "POST",
        lambda w: {"role": "engineer", "note": "for Erin", "days": 7},
    ),
    Route(
        "accounts:invite_revoke",
        Perm.MANAGE,
        lambda w: {"team_pk": w.team.pk, "invite_pk": _invite(w).pk},
        "POST",
        lambda w: {},
    ),
]

# URLs about the person or their current team rather than an object in the URL.
CURRENT_TEAM_ROUTES: list[Route] = [
    Route("studio:dashboard", Perm.READ),
    Route("studio:projects", Perm.READ),
    Route("studio:models", Perm.READ),
    Route("studio:project_new", Perm.EDIT),
    Route("studio:project_new", Perm.EDIT, method="POST", data=lambda w: {"name": "Brand new", "description": ""}),
    Route("studio:model_new", Perm.EDIT),
    Route(
        "studio:model_new",
        Perm.EDIT,
        method="POST",
        data=lambda w: {"name": "Hub model", "kind": "hub", "path_or_id": "HuggingFaceTB/SmolLM2-360M-Instruct"},
    ),
    Route("studio:judges", Perm.READ),
    Route("studio:judge_new", Perm.EDIT),
    Route(
        "studio:judge_new",
        Perm.EDIT,
        method="POST",
        data=lambda w: {"name": "Shorter", "kind": "length", "better": "lower"},
    ),
]

# URLs every logged-in person may use, whatever their team.
PERSONAL_URL_NAMES = {
    "accounts:team_new",
    "accounts:password_change",
    "accounts:password_change_done",
    "accounts:invite",
    "review:api_token_new",
    "review:api_token_revoke",
}

# URLs that authenticate with an API token instead of a session (tested in tests/web/test_review_api.py).
TOKEN_URL_NAMES = {"review:api_dataset"}
