"""Dimensions: prompt pairs added, removed and validated in place; presets copied."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from webapp.studio.models import Dimension
from webapp.studio.presets import preset_list
from webapp.studio.services import dimension_create, dimension_create_from_preset


def _new(project):
    return reverse("studio:dimension_new", args=[project.pk])


def test_eddie_creates_a_dimension_with_two_pairs(client_for, engineer, ours):
    response = client_for(engineer).post(
        _new(ours.project),
        {
            "name": "Optimism",
            "description": "Cheerful",
            "positive": ["You are cheerful.", "You are upbeat."],
            "negative": ["You are gloomy.", "You are bleak."],
            "row": ["a1", "b2"],
        },
    )
    assert response.status_code == 302
    dimension = Dimension.objects.get(name="Optimism")
    assert [(p.positive, p.negative) for p in dimension.pairs.all()] == [
        ("You are cheerful.", "You are gloomy."),
        ("You are upbeat.", "You are bleak."),
    ]


@pytest.mark.parametrize(
    "positive, negative, message",
    [
        ("You are cheerful.", "", "Write the negative system prompt."),
        ("", "You are gloomy.", "Write the positive system prompt."),
        ("   ", "  ", "Write the positive system prompt."),
        ("Same.", "Same.", "identical"),
    ],
    ids=["no-negative", "no-positive", "empty", "identical"],
)
def test_one_sided_empty_or_identical_pairs_are_refused_next_to_the_pair(client_for, engineer, ours, positive, negative, message):
    response = client_for(engineer).post(
        _new(ours.project), {"name": "Optimism", "positive": [positive], "negative": [negative], "row": ["r1"]}
    )
    assert response.status_code == 400
    the_pair = response.content.decode().split('id="pair-r1"', 1)[1].split("</textarea>\n      <div", 3)
    assert any(message in part for part in the_pair), "the message sits inside the pair's own row"
    assert not Dimension.objects.filter(name="Optimism").exists()


def test_a_dimension_needs_at_least_one_pair(client_for, engineer, ours):
    response = client_for(engineer).post(_new(ours.project), {"name": "Optimism"})
    assert response.status_code == 400
    assert b"Add at least one pair" in response.content


def test_a_duplicate_name_is_refused_whatever_its_case(client_for, engineer, ours):
    response = client_for(engineer).post(
        _new(ours.project), {"name": "helpfulness", "positive": ["a"], "negative": ["b"], "row": ["r1"]}
    )
    assert response.status_code == 400
    assert "already has a dimension called “helpfulness”" in response.content.decode()
    assert 'id="err-name">This project already' in response.content.decode()


def test_the_service_refuses_duplicates_too(engineer, ours):
    with pytest.raises(ValidationError, match="already has a dimension"):
        dimension_create(project=ours.project, name="HELPFULNESS", pairs=[("a", "b")], created_by=engineer)


def test_inline_check_reports_only_what_was_typed(client_for, engineer, ours):
    client = client_for(engineer, htmx=True)
    response = client.post(
        _new(ours.project),
        {"_validate": "1", "name": "", "positive": ["half a pair", ""], "negative": ["", ""], "row": ["r1", "r2"]},
    )
    assert response.status_code == 200
    content = response.content.decode()
    assert 'id="err-pair-r1-negative" hx-swap-oob="true">Write the negative system prompt.' in content
    assert 'id="err-name" hx-swap-oob="true"></div>' in content, "an untouched name is not an error yet"
    assert 'id="err-pair-r2-positive" hx-swap-oob="true"></div>' in content, "a blank new row is not an error yet"
    assert not Dimension.objects.filter(name="").exists()


def test_inline_check_spots_a_duplicate_name(client_for, engineer, ours):
    response = client_for(engineer, htmx=True).post(
        _new(ours.project), {"_validate": "1", "name": "Helpfulness", "positive": [""], "negative": [""], "row": ["r1"]}
    )
    assert "already has a dimension" in response.content.decode()


def test_inline_check_on_an_existing_dimension_allows_its_own_name(client_for, engineer, ours):
    url = reverse("studio:dimension", args=[ours.dimension.pk])
    response = client_for(engineer, htmx=True).post(
        url, {"_validate": "1", "name": "Helpfulness", "positive": ["a"], "negative": ["b"], "row": ["r1"]}
    )
    assert 'id="err-name" hx-swap-oob="true"></div>' in response.content.decode()


def test_add_pair_returns_one_blank_row(client_for, engineer, ours):
    response = client_for(engineer, htmx=True).get(reverse("studio:dimension_pair_row", args=[ours.project.pk]))
    content = response.content.decode()
    assert content.count('class="pair-row"') == 1
    assert 'name="positive"' in content and 'name="negative"' in content and "Remove" in content


def test_editing_replaces_the_pairs(client_for, engineer, ours):
    client_for(engineer).post(
        reverse("studio:dimension", args=[ours.dimension.pk]),
        {"name": "Helpfulness", "positive": ["Be useful.", "Be kind."], "negative": ["Be useless.", "Be rude."]},
    )
    assert ours.dimension.pairs.count() == 2


def test_victor_sees_the_editor_read_only(client_for, viewer, ours):
    content = client_for(viewer).get(reverse("studio:dimension", args=[ours.dimension.pk])).content.decode()
    assert "You can read this dimension" in content
    assert "disabled" in content and "Save dimension" not in content and "hx-post" not in content


def test_copying_a_preset_brings_its_pairs(client_for, engineer, ours):
    client_for(engineer).post(reverse("studio:dimension_preset", args=[ours.project.pk]), {"key": "optimism"})
    dimension = Dimension.objects.get(project=ours.project, preset_key="optimism")
    assert dimension.pairs.count() == 2


def test_a_copied_harmlessness_preset_may_refuse_and_optimism_may_not(engineer, ours):
    harmlessness = dimension_create_from_preset(project=ours.project, key="harmlessness", created_by=engineer)
    optimism = dimension_create_from_preset(project=ours.project, key="optimism", created_by=engineer)
    assert harmlessness.refusal_allowed is True and optimism.refusal_allowed is False


def test_eddie_lets_a_dimensions_chosen_side_refuse_and_takes_it_back(client_for, engineer, ours):
    url = reverse("studio:dimension", args=[ours.dimension.pk])
    form = {"name": "Helpfulness", "positive": ["You are helpful."], "negative": ["You are unhelpful."], "row": ["r1"]}
    client = client_for(engineer)
    assert "The chosen side may refuse" in client.get(url).content.decode()
    client.post(url, {**form, "refusal_allowed": "on"})
    ours.dimension.refresh_from_db()
    assert ours.dimension.refusal_allowed is True
    assert 'id="id_refusal_allowed" checked' in client.get(url).content.decode()
    client.post(url, form)
    ours.dimension.refresh_from_db()
    assert ours.dimension.refusal_allowed is False


def test_the_paper_criteria_are_offered_as_presets():
    keys = {preset.key for preset in preset_list() if preset.paper}
    assert keys == {"helpfulness", "honesty", "harmlessness", "general"}


def test_copying_the_same_preset_twice_says_why_not(client_for, engineer, ours):
    dimension_create_from_preset(project=ours.project, key="honesty", created_by=engineer)
    response = client_for(engineer).post(
        reverse("studio:dimension_preset", args=[ours.project.pk]), {"key": "honesty"}, follow=True
    )
    assert "already has a dimension called “Honesty”" in response.content.decode()


def test_a_dimension_used_by_a_run_is_kept(client_for, engineer, ours):
    client_for(engineer).post(reverse("studio:dimension_delete", args=[ours.dimension.pk]))
    assert Dimension.objects.filter(pk=ours.dimension.pk).exists()


def test_an_unused_dimension_can_be_deleted(client_for, engineer, ours):
    spare = dimension_create(project=ours.project, name="Spare", pairs=[("a", "b")], created_by=engineer)
    client_for(engineer).post(reverse("studio:dimension_delete", args=[spare.pk]))
    assert not Dimension.objects.filter(pk=spare.pk).exists()
