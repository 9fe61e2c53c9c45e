"""Run controls that belong to execution (retry a stage, pass the review gate) and the run
page's evidence tabs: directions, filter, calibration, training, cost and the playground."""
from __future__ import annotations

import math

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from webapp.accounts.roles import Perm, role_allows
from webapp.accounts.selectors import membership_get
from webapp.jobs import audits, diagnostics, filtering, probes, services
from webapp.jobs.forms import ProbeForm
from webapp.review import services as review_services
from webapp.studio.models import Run
from webapp.studio.selectors import run_get_for_user


@login_required
@require_POST
def stage_retry(request: HttpRequest, pk: int, kind: str) -> HttpResponse:
    run = run_get_for_user(user=request.user, pk=pk, perm=Perm.EDIT)
    stage = run.stages.filter(kind=kind).first()
    if stage is None:
        raise Http404
    try:
        services.stage_retry(stage=stage)
    except ValidationError as error:
        for message in error.messages:
            messages.error(request, message)
    else:
        messages.success(request, f"Retrying {stage.get_kind_display().lower()}.")
    return redirect("studio:run", pk=run.pk)


@login_required
@require_POST
def review_finish(request: HttpRequest, pk: int) -> HttpResponse:
    run = run_get_for_user(user=request.user, pk=pk, perm=Perm.EDIT)
    review_services.review_finish(run=run)
    return redirect("studio:run", pk=run.pk)


# The run page's tabs --------------------------------------------------------------------------------


def _tab(request: HttpRequest, run: Run, tab: str, template: str, **context) -> HttpResponse:
    membership = membership_get(user=request.user, team=run.project.team_id)
    return render(request, template, {
        "run": run, "project": run.project, "tab": tab,
        "can_edit": role_allows(membership.role, Perm.EDIT), "can_review": role_allows(membership.role, Perm.REVIEW),
        "playground_blinded": probes.playground_blinded(user=request.user, run=run),
        **context,
    })


@login_required
@require_GET
def run_directions(request: HttpRequest, pk: int) -> HttpResponse:
    run = run_get_for_user(user=request.user, pk=pk)
    return _tab(request, run, "directions", "jobs/run_directions.html", panel=diagnostics.direction_panel(run=run))


def _threshold(raw: str | None) -> float | None:
    try:
        value = float(raw) if raw not in (None, "") else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


@login_required
@require_http_methods(["GET", "POST"])
def run_filter(request: HttpRequest, pk: int) -> HttpResponse:
    """The consistency histogram. GET ?threshold= previews a threshold (nothing is stored);
    POST applies it from the stored scores (no model call)."""
    run = run_get_for_user(user=request.user, pk=pk, perm=Perm.EDIT if request.method == "POST" else Perm.READ)
    raw = request.POST.get("threshold") if request.method == "POST" else request.GET.get("threshold")
    threshold = _threshold(raw)
    if raw not in (None, "") and threshold is None:
        messages.error(request, f"“{raw}” is not a number; give the threshold like 0.25 or -1.5.")
    if request.method == "POST" and threshold is not None:
        try:
            result = filtering.filter_threshold_apply(run=run, threshold=threshold)
        except ValidationError as error:
            for message in error.messages:
                messages.error(request, message)
        else:
            note = " The stages after the filter run again with the new selection." if result["regenerating"] else ""
            messages.success(request, f"Threshold {threshold:.4g} applied: {result['kept']} of {result['scored']} instructions kept.{note}")
            return redirect("jobs:run_filter", pk=run.pk)
        run.refresh_from_db()
    panel = diagnostics.filter_panel(run=run, threshold=threshold)
    template = "jobs/_filter_preview.html" if request.htmx and request.GET.get("preview") else "jobs/run_filter.html"
    return _tab(request, run, "filter", template, panel=panel)


@login_required
@require_GET
def run_calibration(request: HttpRequest, pk: int) -> HttpResponse:
    run = run_get_for_user(user=request.user, pk=pk)
    return _tab(request, run, "calibration", "jobs/run_calibration.html", panel=diagnostics.calibration_panel(run=run))


@login_required
@require_GET
def run_training(request: HttpRequest, pk: int) -> HttpResponse:
    run = run_get_for_user(user=request.user, pk=pk)
    return _tab(request, run, "training", "jobs/run_training.html", panel=diagnostics.training_panel(run=run))


@login_required
@require_GET
def run_cost(request: HttpRequest, pk: int) -> HttpResponse:
    run = run_get_for_user(user=request.user, pk=pk)
    return _tab(request, run, "cost", "jobs/run_cost.html", panel=diagnostics.cost_panel(run=run))


@login_required
@require_http_methods(["GET", "POST"])
def run_audit(request: HttpRequest, pk: int) -> HttpResponse:
    """The bias audit: GET shows the latest (polled while it runs); POST asks for a new one."""
    run = run_get_for_user(user=request.user, pk=pk, perm=Perm.EDIT if request.method == "POST" else Perm.READ)
    if request.method == "POST":
        try:
            audits.audit_request(run=run, actor=request.user)
        except ValidationError as error:
            for message in error.messages:
                messages.error(request, message)
        else:
            messages.success(request, "Audit queued: the interactive worker measures the directions and the pairs.")
        return redirect("jobs:run_audit", pk=run.pk)
    panel = diagnostics.audit_panel(run=run)
    template = "jobs/_audit.html" if request.htmx and request.GET.get("partial") else "jobs/run_audit.html"
    return _tab(request, run, "audit", template, panel=panel)


@login_required
@require_POST
def run_audit_remedy(request: HttpRequest, pk: int) -> HttpResponse:
    """Project the chosen references out of one dimension's direction and regenerate its pairs."""
    run = run_get_for_user(user=request.user, pk=pk, perm=Perm.EDIT)
    try:
        dimension = int(request.POST.get("dimension", ""))
    except ValueError:
        messages.error(request, "Say which dimension to orthogonalise.")
        return redirect("jobs:run_audit", pk=run.pk)
    try:
        audits.audit_remedy_request(run=run, actor=request.user, dimension_id=dimension, against=request.POST.getlist("against"))
    except ValidationError as error:
        for message in error.messages:
            messages.error(request, message)
    else:
        messages.success(request, "Remedy queued: the worker orthogonalises the direction, then the pairs are generated "
                                  "again and audited beside the last audit.")
    return redirect("jobs:run_audit", pk=run.pk)


@login_required
@require_http_methods(["GET", "POST"])
def run_playground(request: HttpRequest, pk: int) -> HttpResponse:
    run = run_get_for_user(user=request.user, pk=pk, perm=Perm.REVIEW if request.method == "POST" else Perm.READ)
    probes.playground_require(user=request.user, run=run)
    form = ProbeForm(request.POST or None, run=run)
    probe = None
    if request.method == "POST" and form.is_valid():
        probe = probes.probe_create(run=run, actor=request.user, data=form.cleaned_data)
        if not request.htmx:
            return redirect("jobs:probe", pk=probe.pk)
        form = ProbeForm(run=run, initial={**form.cleaned_data, "dimension": form.cleaned_data["dimension"].pk})
    template = "jobs/_playground.html" if request.htmx and request.method == "POST" else "jobs/run_playground.html"
    response = _tab(request, run, "playground", template, form=form, probe=probe,
                    recent=probes.probe_list_for_run(run=run), stale_after=probes.STALE_QUEUED_S)
    if request.method == "POST" and probe is None and not request.htmx:
        response.status_code = 400  # htmx swaps only 2xx answers: it gets the form with its errors as 200
    if probe is not None:  # the try has its own address: a reload (or a run-status refresh) keeps it on screen
        response["HX-Push-Url"] = reverse("jobs:probe", args=[probe.pk])
    return response


@login_required
@require_GET
def probe_detail(request: HttpRequest, pk: int) -> HttpResponse:
    probe = probes.probe_get_for_user(user=request.user, pk=pk)
    run = probe.run
    return _tab(request, run, "playground", "jobs/run_playground.html", form=ProbeForm(run=run), probe=probe,
                recent=probes.probe_list_for_run(run=run), stale_after=probes.STALE_QUEUED_S)
