"""Run controls that belong to execution: retry a stage, pass the review gate."""
from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from webapp.accounts.roles import Perm
from webapp.jobs import services
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
    services.review_finish(run=run)
    return redirect("studio:run", pk=run.pk)
