"""Studio pages. Each view checks the method, checks access through a selector, calls one
service and renders; `base_template` (see accounts.context_processors) makes the same
template answer full-page requests and htmx requests."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from webapp.jobs.audits import audit_warning
from webapp.jobs.probes import playground_blinded
from webapp.accounts.roles import Perm, role_allows
from webapp.accounts.selectors import current_membership, current_team_remember, membership_get, role_require
from webapp.studio import model_checks, services
from webapp.studio.comparison import MIN_RUNS, run_comparison, run_list_for_comparison
from webapp.studio.forms import DimensionEditor, JudgeForm, ModelSpecForm, PairRow, ProjectForm, RunForm
from webapp.studio.presets import preset_list
from webapp.studio.selectors import (
    dimension_get_for_user,
    dimension_list_for_project,
    judge_get_for_user,
    judge_list_for_team,
    model_get_for_user,
    model_list_for_team,
    project_get_for_user,
    project_list_for_team,
    run_get_for_user,
    run_list_for_project,
    run_list_for_team,
)


def _access(request: HttpRequest, team_id: int) -> dict:
    """Template flags for the user's role in a team they belong to (and make it the current team)."""
    membership = membership_get(user=request.user, team=team_id)
    current_team_remember(request, membership)
    return {
        "membership": membership,
        "can_edit": role_allows(membership.role, Perm.EDIT),
        "can_manage": role_allows(membership.role, Perm.MANAGE),
        "can_review": role_allows(membership.role, Perm.REVIEW),
    }


def _current(request: HttpRequest, perm: Perm = Perm.READ):
    """The current team membership with `perm`; None when the user has no team yet."""
    membership = current_membership(request)
    if membership is not None:
        role_require(user=request.user, team=membership.team_id, perm=perm)
    return membership


def _no_team(request: HttpRequest) -> HttpResponse:
    messages.info(request, "Create a team first, or open an invite link from a team owner.")
    return redirect("accounts:team_new")


# Dashboard and projects --------------------------------------------------------------------------


@login_required
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    membership = _current(request)
    context: dict = {"membership": membership}
    if membership is not None:
        context.update(
            projects=project_list_for_team(team=membership.team),
            runs=run_list_for_team(team=membership.team, limit=10),
            can_edit=role_allows(membership.role, Perm.EDIT),
        )
    return render(request, "studio/dashboard.html", context)


@login_required
@require_GET
def project_list(request: HttpRequest) -> HttpResponse:
    membership = _current(request)
    if membership is None:
        return _no_team(request)
    return render(
        request,
        "studio/project_list.html",
        {
            "membership": membership,
            "projects": project_list_for_team(team=membership.team),
            "can_edit": role_allows(membership.role, Perm.EDIT),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def project_new(request: HttpRequest) -> HttpResponse:
    membership = _current(request, Perm.EDIT)
    if membership is None:
        return _no_team(request)
    form = ProjectForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            project = services.project_create(team=membership.team, created_by=request.user, **form.cleaned_data)
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, f"Created {project}. Next: add a dimension or copy a preset.")
            return redirect("studio:project", pk=project.pk)
    return render(request, "studio/project_form.html", {"form": form, "team": membership.team})


@login_required
@require_GET
def project_detail(request: HttpRequest, pk: int) -> HttpResponse:
    project = project_get_for_user(user=request.user, pk=pk)
    dimensions = dimension_list_for_project(project=project)
    taken = {dimension.preset_key for dimension in dimensions} | {d.name.lower() for d in dimensions}
    presets = [p for p in preset_list() if p.key not in taken and p.name.lower() not in taken]
    return render(
        request,
        "studio/project_detail.html",
        {
            "project": project,
            "dimensions": dimensions,
            "presets": presets,
            "runs": run_list_for_project(project=project),
            **_access(request, project.team_id),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def project_edit(request: HttpRequest, pk: int) -> HttpResponse:
    project = project_get_for_user(user=request.user, pk=pk, perm=Perm.EDIT)
    form = ProjectForm(request.POST or None, initial={"name": project.name, "description": project.description})
    if request.method == "POST" and form.is_valid():
        try:
            services.project_update(project=project, actor=request.user, **form.cleaned_data)
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, "Project saved.")
            return redirect("studio:project", pk=project.pk)
    return render(request, "studio/project_form.html", {"form": form, "project": project, "team": project.team})


# Dimensions --------------------------------------------------------------------------------------


def _dimension_inline_errors(request: HttpRequest, editor: DimensionEditor) -> HttpResponse:
    """The answer to the editor's inline check: error slots swapped in place, nothing saved."""
    editor.is_valid()
    editor.keep_only_touched_errors()
    return render(request, "studio/_dimension_errors.html", {"editor": editor})


@login_required
@require_http_methods(["GET", "POST"])
def dimension_new(request: HttpRequest, project_pk: int) -> HttpResponse:
    project = project_get_for_user(user=request.user, pk=project_pk, perm=Perm.EDIT)
    editor = DimensionEditor(request.POST if request.method == "POST" else None, project=project)
    if request.method == "POST":
        if request.POST.get("_validate"):
            return _dimension_inline_errors(request, editor)
        if editor.is_valid():
            try:
                dimension = services.dimension_create(project=project, created_by=request.user, **editor.service_kwargs)
            except ValidationError as error:
                editor.form.add_error(None, error)
            else:
                messages.success(request, f"Created the dimension {dimension}.")
                return redirect("studio:project", pk=project.pk)
    return render(
        request,
        "studio/dimension_editor.html",
        {"project": project, "editor": editor, **_access(request, project.team_id)},
        status=400 if request.method == "POST" else 200,
    )


@login_required
@require_http_methods(["GET", "POST"])
def dimension_detail(request: HttpRequest, pk: int) -> HttpResponse:
    perm = Perm.EDIT if request.method == "POST" else Perm.READ
    dimension = dimension_get_for_user(user=request.user, pk=pk, perm=perm)
    project = dimension.project
    editor = DimensionEditor(request.POST if request.method == "POST" else None, project=project, dimension=dimension)
    if request.method == "POST":
        if request.POST.get("_validate"):
            return _dimension_inline_errors(request, editor)
        if editor.is_valid():
            try:
                services.dimension_update(dimension=dimension, actor=request.user, **editor.service_kwargs)
            except ValidationError as error:
                editor.form.add_error(None, error)
            else:
                messages.success(request, f"Saved {dimension}.")
                return redirect("studio:project", pk=project.pk)
    return render(
        request,
        "studio/dimension_editor.html",
        {"project": project, "dimension": dimension, "editor": editor, **_access(request, project.team_id)},
        status=400 if request.method == "POST" else 200,
    )


@login_required
@require_GET
def dimension_pair_row(request: HttpRequest, project_pk: int) -> HttpResponse:
    """An empty prompt-pair row for the editor's “Add pair” button."""
    project_get_for_user(user=request.user, pk=project_pk, perm=Perm.EDIT)
    return render(request, "studio/_pair_row.html", {"row": PairRow(), "can_edit": True})


@login_required
@require_POST
def dimension_preset(request: HttpRequest, project_pk: int) -> HttpResponse:
    project = project_get_for_user(user=request.user, pk=project_pk, perm=Perm.EDIT)
    try:
        dimension = services.dimension_create_from_preset(
            project=project, key=request.POST.get("key", ""), created_by=request.user
        )
    except ValidationError as error:
        for message in error.messages:
            messages.error(request, message)
    else:
        messages.success(request, f"Copied the {dimension} preset; edit it to make it yours.")
    return redirect("studio:project", pk=project.pk)


@login_required
@require_POST
def dimension_delete(request: HttpRequest, pk: int) -> HttpResponse:
    dimension = dimension_get_for_user(user=request.user, pk=pk, perm=Perm.EDIT)
    try:
        services.dimension_delete(dimension=dimension, actor=request.user)
    except ValidationError as error:
        for message in error.messages:
            messages.error(request, message)
        return redirect("studio:dimension", pk=dimension.pk)
    messages.success(request, f"Deleted the dimension {dimension}.")
    return redirect("studio:project", pk=dimension.project_id)


# Models ------------------------------------------------------------------------------------------


@login_required
@require_GET
def model_list(request: HttpRequest) -> HttpResponse:
    membership = _current(request)
    if membership is None:
        return _no_team(request)
    return render(
        request,
        "studio/model_list.html",
        {
            "membership": membership,
            "models": model_list_for_team(team=membership.team).prefetch_related(model_checks.model_checks_prefetch()),
            "can_edit": role_allows(membership.role, Perm.EDIT),
        },
    )


@login_required
@require_POST
def model_check(request: HttpRequest, pk: int) -> HttpResponse:
    """Check the model again (the interactive worker loads it and answers four requests)."""
    model = model_get_for_user(user=request.user, pk=pk, perm=Perm.EDIT)
    model_checks.model_check_request(model=model, actor=request.user)
    messages.success(request, f"Checking {model}; this page shows the result in a minute or two.")
    return redirect("studio:models")


def _model_form_submit(request: HttpRequest, form: ModelSpecForm, *, team=None, model=None):
    try:
        if model is None:
            return services.model_create(team=team, created_by=request.user, **form.cleaned_data)
        return services.model_update(model=model, actor=request.user, **form.cleaned_data)
    except ValidationError as error:
        form.add_error(None, error)
        return None


@login_required
@require_http_methods(["GET", "POST"])
def model_new(request: HttpRequest) -> HttpResponse:
    membership = _current(request, Perm.EDIT)
    if membership is None:
        return _no_team(request)
    form = ModelSpecForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if _model_form_submit(request, form, team=membership.team) is not None:
            messages.success(request, "Model added; choose it when you create a run.")
            return redirect("studio:models")
    return render(request, "studio/model_form.html", {"form": form, "team": membership.team})


@login_required
@require_http_methods(["GET", "POST"])
def model_edit(request: HttpRequest, pk: int) -> HttpResponse:
    model = model_get_for_user(user=request.user, pk=pk, perm=Perm.EDIT)
    form = ModelSpecForm(request.POST or None, instance=model)
    if request.method == "POST" and form.is_valid():
        if _model_form_submit(request, form, model=model) is not None:
            messages.success(request, "Model saved.")
            return redirect("studio:models")
    return render(request, "studio/model_form.html", {"form": form, "model": model, "team": model.team})


@login_required
@require_POST
def model_delete(request: HttpRequest, pk: int) -> HttpResponse:
    model = model_get_for_user(user=request.user, pk=pk, perm=Perm.EDIT)
    try:
        services.model_delete(model=model, actor=request.user)
    except ValidationError as error:
        for message in error.messages:
            messages.error(request, message)
    else:
        messages.success(request, f"Deleted the model {model}.")
    return redirect("studio:models")


# Judges ------------------------------------------------------------------------------------------


@login_required
@require_GET
def judge_list(request: HttpRequest) -> HttpResponse:
    membership = _current(request)
    if membership is None:
        return _no_team(request)
    return render(request, "studio/judge_list.html", {
        "membership": membership, "judges": judge_list_for_team(team=membership.team),
        "can_edit": role_allows(membership.role, Perm.EDIT),
    })


def _judge_form_submit(request: HttpRequest, form: JudgeForm, *, team=None, judge=None):
    try:
        if judge is None:
            return services.judge_create(team=team, created_by=request.user, **form.cleaned_data)
        return services.judge_update(judge=judge, actor=request.user, **form.cleaned_data)
    except ValidationError as error:
        form.add_error(None, error)
        return None


@login_required
@require_http_methods(["GET", "POST"])
def judge_new(request: HttpRequest) -> HttpResponse:
    membership = _current(request, Perm.EDIT)
    if membership is None:
        return _no_team(request)
    form = JudgeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if _judge_form_submit(request, form, team=membership.team) is not None:
            messages.success(request, "Judge added; choose it when you create a run.")
            return redirect("studio:judges")
    return render(request, "studio/judge_form.html", {"form": form, "team": membership.team})


@login_required
@require_http_methods(["GET", "POST"])
def judge_edit(request: HttpRequest, pk: int) -> HttpResponse:
    judge = judge_get_for_user(user=request.user, pk=pk, perm=Perm.EDIT)
    had_key = bool(judge.api_key)
    form = JudgeForm(request.POST or None, instance=judge)
    if request.method == "POST" and form.is_valid():
        saved = _judge_form_submit(request, form, judge=judge)
        if saved is not None:
            messages.success(request, "Judge saved.")
            if had_key and not saved.api_key:
                messages.warning(request, "The base URL moved to another address, so the stored API key was cleared; "
                                          "edit the judge and type the key again if the new address needs one.")
            return redirect("studio:judges")
    return render(request, "studio/judge_form.html", {"form": form, "judge": judge, "team": judge.team})


@login_required
@require_POST
def judge_delete(request: HttpRequest, pk: int) -> HttpResponse:
    judge = judge_get_for_user(user=request.user, pk=pk, perm=Perm.EDIT)
    try:
        services.judge_delete(judge=judge, actor=request.user)
    except ValidationError as error:
        for message in error.messages:
            messages.error(request, message)
    else:
        messages.success(request, f"Deleted the judge {judge}.")
    return redirect("studio:judges")


# Runs --------------------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def run_new(request: HttpRequest, project_pk: int) -> HttpResponse:
    project = project_get_for_user(user=request.user, pk=project_pk, perm=Perm.EDIT)
    form = RunForm(request.POST or None, request.FILES or None, project=project)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        config = {name: data[name] for name in services.RUN_CONFIG_FIELDS}
        config.update(name=data["name"], instructions_file=data.get("instructions_file") or None)
        try:
            run = services.run_create(
                project=project,
                created_by=request.user,
                model=data["model"],
                dimensions=list(data["dimensions"]),
                config=config,
            )
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, f"Created {run}. Check its stages, then launch it.")
            return redirect("studio:run", pk=run.pk)
    return render(
        request,
        "studio/run_form.html",
        {"project": project, "form": form, **_access(request, project.team_id)},
        status=400 if form.is_bound and form.errors else 200,
    )


@login_required
@require_GET
def run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    run = run_get_for_user(user=request.user, pk=pk)
    return render(request, "studio/run_detail.html", {
        "run": run, "project": run.project, **_access(request, run.project.team_id),
        "playground_blinded": playground_blinded(user=request.user, run=run),
        "audit_warning": audit_warning(run=run),
    })


@login_required
@require_GET
def run_compare(request: HttpRequest, pk: int) -> HttpResponse:
    """Runs of a project side by side (`?runs=<id>&runs=<id>…`); with fewer than two, the picker."""
    project = project_get_for_user(user=request.user, pk=pk)
    runs = run_list_for_comparison(project=project, ids=request.GET.getlist("runs"))
    access = _access(request, project.team_id)
    return render(
        request,
        "studio/run_compare.html",
        {
            "project": project,
            "comparison": run_comparison(runs=runs, review=access["can_edit"]) if len(runs) >= MIN_RUNS else None,
            "selected": {run.pk for run in runs},
            "runs": run_list_for_project(project=project),
            "min_runs": MIN_RUNS,
            **access,
        },
    )


@login_required
@require_POST
def run_launch(request: HttpRequest, pk: int) -> HttpResponse:
    run = run_get_for_user(user=request.user, pk=pk, perm=Perm.EDIT)
    try:
        services.run_launch(run=run, actor=request.user, override_model_check=bool(request.POST.get("override_model_check")))
    except ValidationError as error:
        for message in error.messages:
            messages.error(request, message)
    else:
        messages.success(request, f"Launched {run}.")
    return redirect("studio:run", pk=run.pk)


@login_required
@require_POST
def run_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    run = run_get_for_user(user=request.user, pk=pk, perm=Perm.EDIT)
    try:
        services.run_cancel(run=run, actor=request.user)
    except ValidationError as error:
        for message in error.messages:
            messages.error(request, message)
    else:
        messages.success(request, f"Cancelled {run}.")
    return redirect("studio:run", pk=run.pk)

