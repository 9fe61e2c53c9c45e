"""Review pages. Each view checks the method, checks access through a selector, calls one
service and renders; the same template answers full pages and htmx requests (`base_template`)."""
from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from webapp.ids import id_parse
from webapp.accounts.roles import Perm, role_allows
from webapp.accounts.selectors import current_team_remember, membership_get
from webapp.jobs.models import Pair
from webapp.jobs.probes import playground_blinded
from webapp.review import export, selectors, services
from webapp.review.diff import word_diff
from webapp.review.models import ApiToken, Resolution
from webapp.studio.models import Run
from webapp.studio.selectors import run_get_for_user

SHORTCUTS = [
    ("1 or ←", "Left is better"),
    ("2 or →", "Right is better"),
    ("t", "Tie"),
    ("b", "Both bad"),
    ("s", "Skip"),
    ("u", "Undo the last verdict"),
    ("e / r", "Edit the left / right response"),
    ("n", "Write a rationale"),
    ("Ctrl+Enter", "Save an edit · Esc cancels"),
]
FORMATS = {
    "jsonl": ("application/x-ndjson", "jsonl"),
    "parquet": ("application/vnd.apache.parquet", "parquet"),
    "card": ("text/markdown; charset=utf-8", "md"),
}


def _is_lead(request: HttpRequest, run: Run) -> bool:
    membership = membership_get(user=request.user, team=run.project.team_id)
    current_team_remember(request, membership)
    return role_allows(membership.role, Perm.EDIT)


def _queue_context(request: HttpRequest, run: Run) -> dict:
    assignment = selectors.assignment_next_for_user(run=run, user=request.user)
    context: dict = {
        "run": run,
        "project": run.project,
        "assignment": assignment,
        "progress": selectors.progress_for_user(run=run, user=request.user),
        "can_undo": selectors.verdict_latest_for_user(run=run, user=request.user) is not None,
        "is_lead": _is_lead(request, run),
        "shortcuts": SHORTCUTS,
        "playground_blinded": playground_blinded(user=request.user, run=run),
    }
    if assignment is not None:
        review = selectors.pair_review_get(pair=assignment.pair)
        sides = ("chosen", "rejected") if assignment.left_is_chosen else ("rejected", "chosen")
        left, right = (getattr(review, side) for side in sides)
        left_answering, right_answering = (selectors.pair_answering(pair=assignment.pair, side=side) for side in sides)
        context.update(left=left, right=right, diff=word_diff(left, right), review=review,
                       left_answering=left_answering, right_answering=right_answering)
    if context["is_lead"]:
        context["progress_all"] = selectors.progress_list(run=run)
    return context


@login_required
@require_GET
def queue(request: HttpRequest, pk: int) -> HttpResponse:
    run = run_get_for_user(user=request.user, pk=pk, perm=Perm.REVIEW)
    services.review_assign_for_visit(run=run, user=request.user)
    return render(request, "review/queue.html", _queue_context(request, run))


def _after_queue_action(request: HttpRequest, run: Run) -> HttpResponse:
    if request.htmx:
        return render(request, "review/queue.html", _queue_context(request, run))
    return redirect("review:queue", pk=run.pk)


def _report(request: HttpRequest, error: ValidationError) -> None:
    for message in error.messages:
        messages.error(request, message)


def _int(value: str | None) -> int:
    return id_parse(value) or 0


@login_required
@require_POST
def verdict(request: HttpRequest, pk: int) -> HttpResponse:
    run = run_get_for_user(user=request.user, pk=pk, perm=Perm.REVIEW)
    try:
        services.verdict_submit(
            run=run,
            user=request.user,
            assignment_id=_int(request.POST.get("assignment")),
            choice=request.POST.get("choice", ""),
            rationale=request.POST.get("rationale", ""),
        )
    except ValidationError as error:
        _report(request, error)
    return _after_queue_action(request, run)


@login_required
@require_POST
def undo(request: HttpRequest, pk: int) -> HttpResponse:
    run = run_get_for_user(user=request.user, pk=pk, perm=Perm.REVIEW)
    try:
        undone = services.verdict_undo(run=run, user=request.user)
    except ValidationError as error:
        _report(request, error)
    else:
        messages.info(request, f"Undid your verdict “{undone.get_choice_display().lower()}”; the pair is back.")
    return _after_queue_action(request, run)


@login_required
@require_POST
def edit(request: HttpRequest, pk: int) -> HttpResponse:
    run = run_get_for_user(user=request.user, pk=pk, perm=Perm.REVIEW)
    try:
        services.pair_edit(
            run=run,
            user=request.user,
            assignment_id=_int(request.POST.get("assignment")),
            side=request.POST.get("side", ""),
            text=request.POST.get("text", ""),
        )
    except ValidationError as error:
        _report(request, error)
    else:
        messages.success(request, "Saved your edit; the original is kept.")
    return _after_queue_action(request, run)


def _lead_context(request: HttpRequest, run: Run) -> dict:
    summary = selectors.review_summary(run=run)
    meta = selectors.dataset_meta_from_summary(run=run, summary=summary)
    return {
        "run": run,
        "project": run.project,
        "summary": summary,
        "progress_all": selectors.progress_list(run=run),
        "export_meta": meta,
        "outcomes": Resolution.Outcome.choices,
        "events": selectors.audit_list(run=run),
        "tokens": ApiToken.objects.filter(user=request.user),
        "api_url": request.build_absolute_uri(f"/api/runs/{run.pk}/dataset.jsonl"),
    }


@login_required
@require_GET
def lead(request: HttpRequest, pk: int) -> HttpResponse:
    run = run_get_for_user(user=request.user, pk=pk, perm=Perm.EDIT)
    _is_lead(request, run)
    services.review_assign(run=run)
    return render(request, "review/lead.html", _lead_context(request, run))


@login_required
@require_POST
def resolve(request: HttpRequest, pk: int, pair_pk: int) -> HttpResponse:
    run = run_get_for_user(user=request.user, pk=pk, perm=Perm.EDIT)
    pair = get_object_or_404(Pair, pk=pair_pk, run=run)
    try:
        services.pair_resolve(
            run=run,
            pair=pair,
            outcome=request.POST.get("outcome", ""),
            based_on_version=_int(request.POST.get("version")),
            user=request.user,
            note=request.POST.get("note", ""),
        )
    except ValidationError as error:
        _report(request, error)
    else:
        messages.success(request, f"Resolved the pair “{pair.instruction.text[:60]}”.")
    return redirect("review:lead", pk=run.pk)


def _dataset_response(run: Run, fmt: str) -> HttpResponse:
    if fmt not in FORMATS:
        raise Http404("Unknown format.")
    content_type, extension = FORMATS[fmt]
    # JSONL and Parquet stream a batch of pairs at a time: memory does not grow with the dataset.
    if fmt == "jsonl":
        response: HttpResponse = StreamingHttpResponse(
            export.jsonl_stream(selectors.dataset_row_batches(run=run)), content_type=content_type)
    elif fmt == "parquet":
        response = FileResponse(export.parquet_file(selectors.dataset_row_batches(run=run),
                                                    selectors.dataset_quality_columns(run=run)), content_type=content_type)
    else:
        response = HttpResponse(export.dataset_card(run=run, meta=selectors.dataset_summary(run=run)),
                                content_type=content_type)
    name = "README" if fmt == "card" else f"run-{run.pk}-pairs"
    response["Content-Disposition"] = f'attachment; filename="{name}.{extension}"'
    response["X-Review-Note"] = selectors.dataset_note(run)
    return response


@login_required
@require_GET
def download(request: HttpRequest, pk: int, fmt: str) -> HttpResponse:
    run = run_get_for_user(user=request.user, pk=pk, perm=Perm.EDIT)
    response = _dataset_response(run, fmt)
    services.export_record(run=run, user=request.user, fmt=fmt, via="page")
    return response


@csrf_exempt
@require_GET
def api_dataset(request: HttpRequest, pk: int, fmt: str) -> HttpResponse:
    """For training scripts: `Authorization: Bearer <token>`; 401 without a valid token."""
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else ""
    try:
        user = services.api_token_authenticate(token=token)
    except PermissionDenied as error:
        response = HttpResponse(str(error), status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="icon2"'
        return response
    run = run_get_for_user(user=user, pk=pk, perm=Perm.EDIT)
    response = _dataset_response(run, fmt)
    services.export_record(run=run, user=user, fmt=fmt, via="api")
    return response


def _back_url(request: HttpRequest) -> str:
    target = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return target
    return reverse("studio:dashboard")


def _back(request: HttpRequest) -> HttpResponse:
    return redirect(_back_url(request))


@login_required
@require_POST
def api_token_new(request: HttpRequest) -> HttpResponse:
    try:
        token = services.api_token_create(user=request.user, name=request.POST.get("name", ""))
    except ValidationError as error:
        for message in error.messages:
            messages.error(request, message)
        return _back(request)
    # Shown once, in this page (sent no-store), never in the messages cookie.
    return render(request, "review/api_token_new.html", {"token": token, "back": _back_url(request)})


@login_required
@require_POST
def api_token_revoke(request: HttpRequest, token_pk: int) -> HttpResponse:
    try:
        services.api_token_revoke(user=request.user, token_id=token_pk)
    except ApiToken.DoesNotExist:
        raise Http404("No such token.") from None
    messages.success(request, "Revoked the token.")
    return _back(request)
