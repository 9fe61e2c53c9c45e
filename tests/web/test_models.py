"""Models a run can use: the embedded SmolLM2, local folders, GGUF files and hub ids."""

from __future__ import annotations

import pytest
from django.urls import reverse

from webapp.studio.models import ModelSpec


def _add(client, **data):
    return client.post(reverse("studio:model_new"), {"name": "M", "kind": "local_dir", "path_or_id": "", **data})


def test_every_team_sees_the_embedded_model(client_for, viewer, outsider, ours):
    for user in (viewer, outsider):
        assert b"SmolLM2-135M-Instruct (embedded)" in client_for(user).get(reverse("studio:models")).content


@pytest.mark.parametrize(
    "data, field, message",
    [
        ({"kind": "local_dir", "path_or_id": ""}, "path_or_id", "Give the path"),
        ({"kind": "gguf", "path_or_id": "/models/model.bin"}, "path_or_id", "ending in .gguf"),
        ({"kind": "hub", "path_or_id": "just-a-name"}, "path_or_id", "looks like org/name"),
        ({"kind": "local_dir", "path_or_id": "/m", "revision": "main"}, "revision", "Only hub models"),
        ({"kind": "local_dir", "path_or_id": "/m", "layers_attr": "model..layers"}, "layers_attr", "dotted attribute"),
        ({"kind": "embedded", "path_or_id": "/m"}, "kind", "Select a valid choice"),
        ({"name": "local llama", "path_or_id": "/models/m"}, "name", "already has a model"),
        ({"name": "SmolLM2-135M-Instruct (embedded)", "path_or_id": "/models/m"}, "name", "built-in model"),
    ],
    ids=["no-path", "not-gguf", "bad-hub-id", "revision-off-hub", "bad-layers-attr", "embedded", "duplicate", "builtin-name"],
)
def test_bad_models_are_refused_next_to_the_field(client_for, engineer, ours, data, field, message):
    response = _add(client_for(engineer), **data)
    content = response.content.decode()
    assert f'id="{field}-errors"' in content
    assert message in content.split(f'id="{field}-errors"', 1)[1][:300]


def test_a_hub_model_with_a_revision_is_saved(client_for, engineer, ours):
    _add(client_for(engineer), name="SmolLM2 360M", kind="hub", path_or_id="HuggingFaceTB/SmolLM2-360M-Instruct", revision="main")
    model = ModelSpec.objects.get(name="SmolLM2 360M")
    assert model.team == ours.team and model.revision == "main"


def test_a_model_used_by_a_run_is_kept(client_for, engineer, ours):
    from webapp.studio.services import run_create

    run_create(project=ours.project, created_by=engineer, model=ours.model, dimensions=[ours.dimension], config={})
    client_for(engineer).post(reverse("studio:model_delete", args=[ours.model.pk]))
    assert ModelSpec.objects.filter(pk=ours.model.pk).exists()
