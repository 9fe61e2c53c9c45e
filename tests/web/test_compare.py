"""Runs side by side: Olivia's team compares two finished runs of “Support tone” before choosing
which run's pairs to train on; Victor the viewer may look too; Oscar's runs stay hidden."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from webapp.jobs.models import DirectionArtifact
from webapp.review.models import ReviewAssignment, Verdict
from webapp.studio.comparison import direction_separation, run_comparison, run_list_for_comparison
from webapp.studio.models import Run, Stage
from webapp.studio.services import dimension_create, model_embedded_ensure, run_create

from .review_helpers import make_pairs

pytestmark = pytest.mark.django_db

# Held-out separation accuracy per layer, as the extract stage stores it (six layers).
SEPARATION = [0.5, 0.6, 0.9, 0.8, 0.7, 0.6]


def _diagnostics(accuracies: list[float | None]) -> list[dict]:
    return [
        {"layer": layer, "explained_variance": 0.4, "separation_accuracy": acc, "mean_norm": 12.5, "mean_diff_cosine": 0.8}
        for layer, acc in enumerate(accuracies)
    ]


def _finish(run: Run, *, scored: int, kept: int, threshold: float, evaluation: dict, final: dict, wall_s: dict) -> Run:
    """Write a finished run's stages the way the worker and the services do."""
    metrics = {
        "filter": {"kept": kept, "scored": scored, "method": "centred", "threshold": threshold},
        "train": {"steps": 4, "pairs": kept, "final": final, "output_dir": "/tmp/trained"},
        "evaluate": {"evaluation": evaluation},
    }
    for stage in run.stages.all():
        if stage.status == Stage.Status.SKIPPED:
            continue
        stage.status = Stage.Status.SUCCEEDED
        stage.metrics = {**stage.metrics, **metrics.get(stage.kind, {})}
        if stage.kind in wall_s:
            stage.compute = {"wall_s": wall_s[stage.kind], "tokens_in": 100, "tokens_out": 1000, "device": "cpu", "chunks": 1}
        stage.save()
    DirectionArtifact.objects.create(
        run=run, dimension=run.dimensions.first(), path=f"runs/{run.pk}/directions.safetensors", diagnostics=_diagnostics(SEPARATION)
    )
    Run.objects.filter(pk=run.pk).update(status=Run.Status.SUCCEEDED)
    run.refresh_from_db()
    return run


def _review(run: Run, *, people, agree: bool) -> None:
    """Anna and Eddie both review every pair; they agree on all of them, or on none."""
    for i, pair in enumerate(run.pairs.all()):
        for person, choice in zip(people, ["left", "left" if agree else "right"]):
            assignment = ReviewAssignment.objects.create(pair=pair, annotator=person, left_is_chosen=True)
            Verdict.objects.create(assignment=assignment, choice=choice, order="confirm" if choice == "left" else "swap")


@pytest.fixture
def two_runs(ours, owner, annotator, engineer) -> tuple[Run, Run]:
    """“Gentle” keeps a quarter at γ⁺ 0.05 with review; “Strong” keeps a tenth at γ⁺ 0.08, layers 1–4,
    seed 7, without review. Both have finished."""
    model = model_embedded_ensure()
    gentle = run_create(
        project=ours.project, created_by=owner, model=model, dimensions=[ours.dimension],
        config={"name": "Gentle", "keep_fraction": 0.25, "gamma_plus": 0.05, "seed": 0, "require_review": True},
    )
    strong = run_create(
        project=ours.project, created_by=owner, model=model, dimensions=[ours.dimension],
        config={"name": "Strong", "keep_fraction": 0.1, "gamma_plus": 0.08, "seed": 7, "require_review": False,
                "layer_start": 1, "layer_end": 4},
    )
    _finish(
        gentle, scored=64, kept=16, threshold=0.1234,
        evaluation={"win_rate": 0.62, "ci_low": 0.48, "ci_high": 0.75, "n": 16, "wins": 9, "ties": 2, "losses": 5},
        final={"loss": 0.6123, "accuracy": 0.75, "margins": 0.12},
        wall_s={"extract": 3.0, "synthesize": 40.0, "filter": 5.0, "generate": 60.0, "train": 100.0, "evaluate": 20.0},
    )
    _finish(
        strong, scored=64, kept=6, threshold=0.4567,
        evaluation={"win_rate": 0.5, "ci_low": 0.35, "ci_high": 0.65, "n": 16, "wins": 7, "ties": 2, "losses": 7},
        final={"loss": 0.4012, "accuracy": 1.0, "margins": 0.31},
        wall_s={"extract": 3.0, "synthesize": 40.0, "filter": 5.0, "generate": 30.0, "train": 50.0, "evaluate": 20.0},
    )
    generate = gentle.stages.get(kind="generate")
    generate.compute = {**generate.compute, "sample_and_rank": {"wall_s": 540.0}}
    generate.save()
    make_pairs(gentle, 4)
    make_pairs(strong, 6)
    _review(gentle, people=[annotator, engineer], agree=True)
    review = gentle.stages.get(kind="review")
    review.metrics = {"require_review": True, "total": 4, "kept": 4, "counts": {"confirm": 4}}
    review.save()
    return gentle, strong


def _compare(client, project, *runs):
    return client.get(reverse("studio:run_compare", args=[project.pk]), {"runs": [run.pk for run in runs]})


def _rows(content: str) -> dict[str, tuple[bool, list[str]]]:
    """The comparison table: label → (marked as differing, the cells)."""
    rows = {}
    pattern = r'<tr( class="differs")?>\s*<th scope="row">(.*?)( <span class="diff-mark">≠ differs</span>)?</th>(.*?)</tr>'
    for marked, label, mark, cells in re.findall(pattern, content, flags=re.S):
        assert bool(marked) == bool(mark), f"{label}: the row's class and its ≠ marker disagree"
        rows[label] = (bool(marked), re.findall(r"<td>(.*?)</td>", cells, flags=re.S))
    return rows


def test_olivia_sees_both_runs_kept_counts_win_rates_costs_and_separation(two_runs, ours, owner, client_for):
    gentle, strong = two_runs
    response = _compare(client_for(owner), ours.project, strong, gentle)
    content = response.content.decode()
    assert response.status_code == 200
    rows = _rows(content)
    assert rows["Kept"] == (True, ["16", "6"]), "columns go oldest first"
    assert rows["Instructions scored"] == (False, ["64", "64"])
    assert rows["Consistency threshold"] == (True, ["0.1234", "0.4567"])
    assert rows["Pairs"] == (True, ["4", "6"])
    assert rows["Win rate vs base"] == (True, ["62% (48–75%), n=16", "50% (35–65%), n=16"])
    assert rows["Wins / ties / losses"][1] == ["9 / 2 / 5", "7 / 2 / 7"]
    assert rows["Final DPO loss"][1] == ["0.6123", "0.4012"] and rows["Reward accuracy"][1] == ["0.75", "1.00"]
    assert rows["Compute time"] == (True, ["3 min 48 s", "2 min 28 s"])
    assert rows["Tokens out"] == (False, ["6,000", "6,000"])
    assert rows["Sample-and-rank estimate"] == (True, ["9 min 00 s", "—"])
    # Gentle steers the middle third of six layers (2–3), Strong layers 1–4; layer 2 separates best.
    assert rows["Separation (steered layers)"] == (True, ["85%", "75%"])
    assert rows["Best layer"] == (False, ["layer 2 (90%)", "layer 2 (90%)"])
    assert rows["Pairs reviewed"] == (True, ["4", "—"])
    assert rows["Annotator agreement"][1] == ["100% (4 shared)", "—"]
    assert rows["Agree with steering"][1] == ["100%", "—"]
    assert rows["Passed review"][1] == ["4 of 4", "—"]


def test_rows_where_the_settings_differ_are_marked_and_identical_ones_are_not(two_runs, ours, owner, client_for):
    rows = _rows(_compare(client_for(owner), ours.project, *two_runs).content.decode())
    assert rows["Keep fraction"] == (True, ["0.25", "0.1"])
    assert rows["γ⁺ / γ⁻"] == (True, ["0.05 / -0.03", "0.08 / -0.03"])
    assert rows["Seed"] == (True, ["0", "7"])
    assert rows["Layers"] == (True, ["middle third", "1–4"])
    assert rows["Review"] == (True, ["required, 1 per pair", "not required"])
    for same in ("Model", "Dimensions", "Max new tokens", "Decoding", "DPO", "Status"):
        assert rows[same][0] is False, same
    assert rows["DPO"][1][0] == "β=0.1, lr=0.0002, 3 epochs, batch 4, LoRA r=8"


def test_the_page_links_each_run_with_its_status_and_leads_back_to_the_project(two_runs, ours, owner, client_for):
    gentle, strong = two_runs
    content = _compare(client_for(owner), ours.project, *two_runs).content.decode()
    for run in (gentle, strong):
        assert f'<a href="{reverse("studio:run", args=[run.pk])}">{run.name}</a> <span class="badge badge-succeeded">' in content
    assert f'href="{reverse("studio:project", args=[ours.project.pk])}#runs"' in content
    assert 'class="breadcrumbs"' in content and 'class="table-scroll"' in content
    assert "Support tone" in content and "Runs side by side" in content


def test_a_run_of_oscars_team_in_the_query_is_not_found(two_runs, ours, theirs, owner, client_for):
    client = client_for(owner)
    response = _compare(client, ours.project, two_runs[0], theirs.run)
    assert response.status_code == 404
    assert theirs.run.name not in response.content.decode() and "Secret project" not in response.content.decode()


def test_a_run_of_another_project_of_the_same_team_is_not_found_either(two_runs, ours, owner, client_for):
    from webapp.studio.services import project_create

    other = project_create(team=ours.team, name="Billing tone", description="", created_by=owner)
    response = _compare(client_for(owner), other, *two_runs)
    assert response.status_code == 404


def test_oscar_cannot_compare_our_runs_through_his_own_session(two_runs, ours, outsider, client_for):
    assert _compare(client_for(outsider), ours.project, *two_runs).status_code == 404


def test_a_malformed_run_id_is_not_found(ours, owner, client_for):
    url = reverse("studio:run_compare", args=[ours.project.pk])
    assert client_for(owner).get(url, {"runs": ["abc", str(ours.run.pk)]}).status_code == 404


def test_victor_the_viewer_can_compare(two_runs, ours, viewer, client_for):
    response = _compare(client_for(viewer), ours.project, *two_runs)
    assert response.status_code == 200
    assert _rows(response.content.decode())["Kept"][1] == ["16", "6"]


def test_annotators_who_review_blind_see_no_review_figures(two_runs, ours, annotator, engineer, client_for):
    for person, shown in ((annotator, False), (engineer, True)):
        rows = _rows(_compare(client_for(person), ours.project, *two_runs).content.decode())
        assert ("Agree with steering" in rows) is shown and ("Annotator agreement" in rows) is shown
        assert rows["Kept"][1] == ["16", "6"]


def test_with_fewer_than_two_runs_the_page_asks_to_pick_more(two_runs, ours, owner, client_for):
    gentle, _ = two_runs
    client = client_for(owner)
    for response in (_compare(client, ours.project, gentle), _compare(client, ours.project)):
        content = response.content.decode()
        assert response.status_code == 200
        assert "Pick at least 2 runs to compare." in content
        assert 'class="table compare-table"' not in content
        assert f'name="runs" value="{gentle.pk}"' in content, "the picker lists the project's runs"
    content = _compare(client, ours.project, gentle).content.decode()
    assert f'name="runs" value="{gentle.pk}" id="pick-{gentle.pk}" checked' in content


def test_picking_the_same_run_twice_counts_once(two_runs, ours, owner, client_for):
    gentle, _ = two_runs
    content = _compare(client_for(owner), ours.project, gentle, gentle).content.decode()
    assert "Pick at least 2 runs to compare." in content


def test_the_project_page_has_a_checkbox_per_run_and_a_compare_form(two_runs, ours, viewer, client_for):
    content = client_for(viewer).get(reverse("studio:project", args=[ours.project.pk])).content.decode()
    action = reverse("studio:run_compare", args=[ours.project.pk])
    assert f'<form method="get" action="{action}" id="compare-form">' in content
    for run in (*two_runs, ours.run):
        assert f'<input type="checkbox" name="runs" value="{run.pk}" aria-label="Compare {run.name}">' in content
    assert "Compare selected" in content


def test_a_project_with_one_run_shows_no_compare_form(ours, owner, client_for):
    content = client_for(owner).get(reverse("studio:project", args=[ours.project.pk])).content.decode()
    assert ours.run.name in content and "Compare selected" not in content


def test_separation_is_the_mean_over_dimensions_and_the_steered_band(ours, owner):
    honesty = dimension_create(project=ours.project, name="Honesty", pairs=[("Be honest.", "Be dishonest.")], created_by=owner)
    run = run_create(
        project=ours.project, created_by=owner, model=model_embedded_ensure(), dimensions=[ours.dimension, honesty],
        config={"name": "Two dimensions"},
    )
    DirectionArtifact.objects.create(run=run, dimension=ours.dimension, path="a", diagnostics=_diagnostics(SEPARATION))
    DirectionArtifact.objects.create(
        run=run, dimension=honesty, path="b", diagnostics=_diagnostics([0.5, 0.5, 0.7, 1.0, None, 0.5])
    )
    separation, best = direction_separation(run=run)
    assert separation == pytest.approx((0.8 + 0.9) / 2), "layer 2: (0.9+0.7)/2, layer 3: (0.8+1.0)/2"
    assert best == (3, pytest.approx(0.9))


def test_a_run_without_directions_or_finished_stages_shows_dashes(ours, owner):
    second = run_create(
        project=ours.project, created_by=owner, model=model_embedded_ensure(), dimensions=[ours.dimension],
        config={"name": "Draft two", "calibrate": True},
    )
    table = run_comparison(runs=run_list_for_comparison(project=ours.project, ids=[ours.run.pk, second.pk]))
    rows = {row.label: row for row in table.rows}
    assert rows["Separation (steered layers)"].values == ["—", "—"] and not rows["Separation (steered layers)"].differs
    assert rows["Win rate vs base"].values == ["—", "—"] and rows["Compute time"].values == ["—", "—"]
    assert rows["γ⁺ / γ⁻"].values == ["0.08 / -0.03", "0.08 / -0.03 (calibrated)"] and rows["γ⁺ / γ⁻"].differs
    assert [section for section, _ in table.sections] == ["Settings", "Data", "Review", "Training and evaluation", "Cost"]
