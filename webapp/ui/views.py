"""The annotators' workbench: the queue, the trajectory page and its htmx actions, progress.

Views parse, check permissions and render; `curation.review` does the work. An htmx request gets
a partial of the same template (`"ui/trajectory.html#segment"`); edits answer with out-of-band
swaps of just what changed (the segments whose rendering differs, score, flags, history,
version). Without JavaScript the same URLs work as plain pages and redirects.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.core.paginator import Page, Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render, resolve_url
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import HttpResponseClientRedirect, reswap, retarget

from curation import bulk, checks, renaming, review, selectors
from curation import trajectory as fmt
from curation.models import (
    Candidate,
    Comment,
    Domain,
    Flag,
    ReviewStatus,
    Revision,
    Round,
    Trajectory,
)
from curation.services import ConflictError
from webapp.ui import charts, forms, rendering
from webapp.ui.markdown import render_markdown

View = Callable[..., HttpResponse]

PAGE_SIZE = 50
REVISIONS_SHOWN = 8
VIEW = "curation.view_trajectory"
REVIEW = "curation.review_trajectory"
CHANGE = "curation.change_trajectory"
COMMENT = "curation.add_comment"
BULK = bulk.BULK_PERMISSION


# --- Access and errors ------------------------------------------------------------------------


def permission(perm: str) -> Callable[[View], View]:
    """Login and `perm` required. An anonymous htmx request is sent to the login page as a whole
    (HX-Redirect) instead of getting the login form swapped into a fragment."""

    def decorator(view: View) -> View:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                if request.htmx:
                    page = request.htmx.current_url_abs_path or request.get_full_path()
                    login = resolve_url(settings.LOGIN_URL)
                    return HttpResponseClientRedirect(f"{login}?{urlencode({'next': page})}")
                return redirect_to_login(request.get_full_path())
            if not request.user.has_perm(perm):
                if request.htmx:
                    return _alert(request, "You do not have permission to do that.", status=403)
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def _alert(
    request: HttpRequest, message: str, *, status: int, reload: bool = False
) -> HttpResponse:
    response = render(
        request,
        "ui/base.html#alert",
        {"message": message, "level": "error", "reload": reload},
        status=status,
    )
    return reswap(retarget(response, "#alerts"), "innerHTML")


def handles_domain_errors(view: View) -> View:
    """A stale or conflicting save answers 409 ("changed by X at T — reload"), a refused
    approval or another's claim 409 too, a right the user lacks 403, bad input 422; without
    htmx the message is flashed on the page the user comes back to."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except ConflictError as exc:
            status, message = 409, str(exc)
        except PermissionDenied as exc:
            status, message = 403, str(exc) or "You do not have permission to do that."
        except (ValueError, review.RunFailed) as exc:
            status, message = 422, str(exc)
        if request.htmx:
            return _alert(request, message, status=status, reload=status == 409)
        messages.error(request, message)
        if "pk" in kwargs:
            return redirect(_page_url(kwargs["pk"], request))
        return redirect("ui:queue")

    return wrapped


def _valid(form_class: type, data: Any) -> Any:
    form = form_class(data)
    if not form.is_valid():
        problems = "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items())
        raise ValueError(f"the form is incomplete ({problems})")
    return form


def _filters(request: HttpRequest) -> selectors.QueueFilters:
    return forms.QueueFilterForm.from_query(request.GET).filters()


def _page_url(pk: int, request: HttpRequest, anchor: str = "", **extra: object) -> str:
    query = forms.filters_query(_filters(request), **extra)
    return f"{reverse('ui:trajectory', args=[pk])}?{query}{anchor}"


# --- Queue ------------------------------------------------------------------------------------


@require_GET
@permission(VIEW)
@vary_on_headers("HX-Request")
def queue(request: HttpRequest) -> HttpResponse:
    """The queue's rows, total and pages. The counts per filter value cost a pass over every
    candidate, so they come in a second request (`queue_counts`) once the rows are shown."""
    form = forms.QueueFilterForm.from_query(request.GET)
    filters = form.filters()
    counts = None
    search_error = ""
    counted = capped = False
    try:
        rows_query, total, capped = selectors.queue_listing(filters=filters)
        if request.GET.get("counts"):  # without JavaScript: the counts in the page itself
            facets = selectors.queue_facets(filters=filters)
            counted, counts = True, facets.counts if facets else None
        page = Paginator(range(total), PAGE_SIZE).get_page(form.page_number())
        rows = list(
            rows_query.select_related("round", "problem", "claimed_by")
            .only(
                "id", "hinted", "sample_index", "candidate", "review_status", "is_correct",
                "flag_count", "num_tokens", "claimed_until", "round__name",
                "problem__external_id", "problem__domain", "claimed_by__username",
            )[page.start_index() - 1 if total else 0 : page.end_index()]
        )  # fmt: skip
    except selectors.SearchError as exc:
        search_error, total, rows = str(exc), 0, []
        page = Paginator([], PAGE_SIZE).get_page(1)
    context = {
        "filters": filters,
        "query": forms.filters_query(filters),
        "facets": _facet_options(filters, counts),
        "counted": counted,
        "too_broad": counted and counts is None,
        "capped": capped,
        "rows": rows,
        "page": page,
        "page_links": _page_links(page, filters),
        "total": total,
        "now": timezone.now(),
        "sorts": list(SORT_LABELS.items()),
        "search_error": search_error,
        "can_bulk": request.user.has_perm(BULK),
        "bulk_actions": BULK_LABELS,
        "reject_reasons": review.REJECT_REASONS,
        "nav": "queue",
    }
    template = "ui/queue.html#queue" if request.htmx else "ui/queue.html"
    return render(request, template, context)


@require_GET
@permission(VIEW)
@vary_on_headers("HX-Request")
def queue_counts(request: HttpRequest) -> HttpResponse:
    """The filter form again, every option with its count under the other filters."""
    filters = _filters(request)
    if not request.htmx:
        return redirect(f"{reverse('ui:queue')}?{forms.filters_query(filters, counts=1)}")
    try:
        facets = selectors.queue_facets(filters=filters)
    except selectors.SearchError:  # the queue's own answer already says why
        facets = selectors.QueueFacets(0, {})
    context = {
        "filters": filters,
        "facets": _facet_options(filters, facets.counts if facets else None),
        "too_broad": facets is None,
        "counted": True,
        "sorts": list(SORT_LABELS.items()),
    }
    return render(request, "ui/queue.html#filters", context)


BULK_LABELS = {
    bulk.BulkAction.APPROVE: "Approve",
    bulk.BulkAction.REJECT: "Reject (with the reason)",
    bulk.BulkAction.REASSIGN: "Reassign (release, or lease to the annotator named)",
    bulk.BulkAction.RESCORE: "Re-score",
}


@require_POST
@permission(BULK)
@handles_domain_errors
def queue_bulk(request: HttpRequest) -> HttpResponse:
    """A curator's action on the rows ticked in the queue; back to the queue as filtered, with
    what was done and how many were skipped (held by another annotator, refused, missing)."""
    form = _valid(forms.BulkForm, request.POST)
    result = bulk.trajectories_bulk_act(
        action=form.cleaned_data["action"],
        trajectory_ids=form.cleaned_data["ids"],
        reason=form.cleaned_data["reason"],
        assignee=form.assignee_user(),
        user=request.user,
    )
    level = messages.WARNING if result.skipped else messages.SUCCESS
    messages.add_message(request, level, result.summary())
    for pk, why in list(result.refused.items())[:5]:
        messages.warning(request, f"#{pk}: {why}")
    return redirect(f"{reverse('ui:queue')}?{forms.filters_query(_filters(request))}")


SORT_LABELS = {
    "oldest": "Oldest first",
    "newest": "Newest first",
    "flags": "Most flags",
    "shortest": "Shortest",
    "longest": "Longest",
}


@dataclass(frozen=True)
class Option:
    value: str
    label: str
    count: int | None
    selected: bool


def _facet_options(
    filters: selectors.QueueFilters, counts: dict[str, dict[Any, int]] | None
) -> list[tuple[str, str, list[Option]]]:
    """(field, label, options) for each filter select; with `counts`, each option's count."""

    def options(name: str, choices: Iterable[tuple[Any, str]], key=lambda v: v) -> list[Option]:
        current = getattr(filters, name)
        found = counts.get(name, {}) if counts is not None else None
        total = sum(found.values()) if found is not None else None
        result = [Option("", "Any", total, current in ("", None))]
        for value, label in choices:
            count = found.get(key(value), 0) if found is not None else None
            result.append(Option(str(value), label, count, str(current) == str(value)))
        return result

    kinds = (set(checks.KINDS) - set(selectors.INFO_FLAG_KINDS)) | set(
        (counts or {}).get("flag", {})
    )
    kinds |= {filters.flag} - {""}
    flag_options = options("flag", [(kind, kind.replace("_", " ")) for kind in sorted(kinds)])
    flag_options[0] = Option("", "Any", None, not filters.flag)  # one trajectory, many kinds
    rounds = Round.objects.order_by("-id").values_list("pk", "name")
    return [
        ("status", "Status", options("status", ReviewStatus.choices)),
        ("round", "Round", options("round", rounds)),
        ("candidate", "Kind", options("candidate", Candidate.choices[1:])),
        ("domain", "Domain", options("domain", Domain.choices)),
        (
            "correct",
            "Correct",
            options(
                "correct",
                [("yes", "Correct"), ("no", "Wrong"), ("unknown", "Not judged")],
                key=selectors.CORRECTNESS.get,
            ),
        ),
        ("flag", "Flag", flag_options),
    ]


def _page_links(page: Page, filters: selectors.QueueFilters) -> dict[str, str | None]:
    def link(number: int) -> str:
        return f"{reverse('ui:queue')}?{forms.filters_query(filters, page=number)}"

    return {
        "previous": link(page.previous_page_number()) if page.has_previous() else None,
        "next": link(page.next_page_number()) if page.has_next() else None,
    }


@require_POST
@permission(REVIEW)
def claim_next(request: HttpRequest) -> HttpResponse:
    """Lease the next unclaimed item of the queue as filtered, and open it."""
    filters = _filters(request)
    chosen = review.trajectory_claim_next(
        user=request.user,
        queue=selectors.queue_ordered(filters=filters),
        assigned=selectors.assigned_queues(user=request.user),
    )
    if chosen is None:
        messages.info(request, "Nothing left to claim in this queue.")
        target = f"{reverse('ui:queue')}?{forms.filters_query(filters)}"
    else:
        target = _page_url(chosen.pk, request)
    return HttpResponseClientRedirect(target) if request.htmx else redirect(target)


# --- The trajectory page ----------------------------------------------------------------------


def _trajectory(pk: int) -> Trajectory:
    return get_object_or_404(
        Trajectory.objects.select_related("problem", "round", "claimed_by", "reviewed_by"), pk=pk
    )


@dataclass
class PageState:
    """The parse and flags of one version, and each segment's rendering key."""

    trajectory: Trajectory
    segments: list[fmt.Segment]
    flags: list[rendering.FlagView]
    keys: list[tuple]


def _state(trajectory: Trajectory, expand: Iterable[int] = ()) -> PageState:
    segments = review.trajectory_segments(trajectory)
    rows = Flag.objects.filter(trajectory_id=trajectory.pk).only("kind", "message", "start", "end")
    flags = rendering.flag_views(trajectory.text, segments, rows, expand=expand)
    return PageState(trajectory, segments, flags, rendering.segment_keys(segments, flags))


def _check_version(request: HttpRequest, trajectory: Trajectory) -> None:
    """For requests that carry the page's version (htmx adds it to all): refuse a stale page."""
    raw = request.GET.get("base_version") or request.POST.get("base_version")
    if raw and raw.isdigit() and int(raw) != trajectory.version:
        raise review.StaleVersionError(review.stale_message(trajectory))


def _side_context(request: HttpRequest, state: PageState) -> dict[str, Any]:
    """What the sidebar and header show; also re-rendered out of band after each change."""
    trajectory = state.trajectory
    user = request.user
    now = timezone.now()
    claimed = trajectory.claimed_until is not None and trajectory.claimed_until > now
    undoable = review.undoable_revision(trajectory=trajectory)
    revisions = list(
        Revision.objects.filter(trajectory_id=trajectory.pk)
        .select_related("author")
        .defer("before_text", "after_text")
        .order_by("-id")[:REVISIONS_SHOWN]
    )
    for rev in revisions:
        rev.label = action_label(rev.action)
    problems = [f for f in state.flags if f.level != "info"]
    return {
        "t": trajectory,
        # Segment URLs are built from this prefix in the template: a {% url %} per action and
        # segment cost a third of a long trajectory's render time (tests check they match).
        "t_url": reverse("ui:trajectory", args=[trajectory.pk]),
        "version": str(trajectory.version),
        "problem": trajectory.problem,
        "flags": state.flags,
        "problem_flags": problems,
        "hint_count": sum(s.kind == "hint" for s in state.segments),
        "cell_count": sum(s.kind == "code" for s in state.segments),
        "claimed_by_me": claimed and trajectory.claimed_by_id == user.pk,
        "claimed_by_other": claimed and trajectory.claimed_by_id != user.pk,
        "undoable": undoable,
        "undo_label": action_label(undoable.action) if undoable else "",
        "revisions": revisions,
        "reject_reasons": review.REJECT_REASONS,
        "query": forms.filters_query(_filters(request)),
        "can_edit": user.has_perm(CHANGE),
        "can_review": user.has_perm(REVIEW),
        "can_take_over": user.has_perm(review.TAKE_OVER_PERMISSION),
        **_reviews_context(trajectory, user),
        "baseline_count": selectors.trajectory_baselines(trajectory=trajectory).count(),
        "score_reason": (trajectory.score_details or {}).get("reason", ""),
        "score_pending": bool((trajectory.score_details or {}).get("pending")),
        "suggestion": review.trajectory_suggestion(trajectory=trajectory),
    }


def _reviews_context(trajectory: Trajectory, user) -> dict[str, Any]:
    """Overlap: how many of the round's reviews are in, and the user's own. Who decided what is
    shown to curators only, so that annotators decide independently (agreement means nothing
    otherwise)."""
    reviews = list(trajectory.reviews.filter(superseded=False).select_related("annotator"))
    return {
        "reviews": reviews,
        "reviews_required": trajectory.round.reviews_required,
        "my_review": next((r for r in reviews if r.annotator_id == user.pk), None),
        "can_adjudicate": user.has_perm(review.ADJUDICATE_PERMISSION),
    }


ACTION_LABELS = {
    "edit_code": "edit cell",
    "edit_code_run": "edit and run cell",
    "rerun": "re-run cell",
    "rerun_following": "re-run cells",
    "edit_text": "edit text",
    "rephrase_hint": "rephrase hint",
    "fix_placeholder": "fix placeholder",
    "fix_delete_lines": "delete placeholder line",
    "rename": "rename",
    "undo": "undo",
}


def action_label(action: str) -> str:
    """A revision's action in words ("delete_code" -> "delete code")."""
    if action.startswith(review.DECISION_PREFIX):
        return action.removeprefix(review.DECISION_PREFIX).replace("pending", "reopened")
    return ACTION_LABELS.get(action, action.replace("_", " "))


def _expanded(request: HttpRequest) -> set[int]:
    return {int(v) for v in request.GET.getlist("expand") if v.isdigit()}


def _page(
    request: HttpRequest,
    trajectory: Trajectory,
    *,
    editing: int | None = None,
    panel: dict[str, Any] | None = None,
) -> HttpResponse:
    expand = _expanded(request)
    if editing is not None:
        expand.add(editing)
    state = _state(trajectory, expand)
    filters = _filters(request)
    previous_id, next_id = selectors.queue_neighbors(filters=filters, trajectory=trajectory)
    context = {
        **_comments_context(request, trajectory, state.segments),
        **_side_context(request, state),
        "segments": rendering.segment_views(state.segments, state.flags, expand=expand),
        "editing": editing,
        "previous_id": previous_id,
        "next_id": next_id,
        "panel": panel,
    }
    if editing is not None:
        context["editor"] = _editor(state.segments[editing])
    return render(request, "ui/trajectory.html", context)


@require_GET
@permission(VIEW)
def trajectory_page(request: HttpRequest, pk: int) -> HttpResponse:
    return _page(request, _trajectory(pk))


@require_GET
@permission(VIEW)
def score(request: HttpRequest, pk: int) -> HttpResponse:
    """The score card alone: a pending one polls here until the sandbox queue has scored it."""
    trajectory = _trajectory(pk)
    context = _side_context(request, _state(trajectory))
    return render(request, "ui/trajectory.html#score", context)


def _segment_or_404(trajectory: Trajectory, index: int) -> list[fmt.Segment]:
    segments = review.trajectory_segments(trajectory)
    if not 0 <= index < len(segments):
        raise Http404("no such segment")
    return segments


@require_GET
@permission(VIEW)
@vary_on_headers("HX-Request")
@handles_domain_errors
def segment(request: HttpRequest, pk: int, index: int) -> HttpResponse:
    """One segment (expanded with `full=1`): the expand button and an editor's Cancel use it."""
    trajectory = _trajectory(pk)
    _segment_or_404(trajectory, index)
    if not request.htmx:
        return redirect(_page_url(pk, request, f"#seg-{index}", expand=index))
    _check_version(request, trajectory)
    expand = {index} if request.GET.get("full") else set()
    state = _state(trajectory, expand)
    context = {
        **_side_context(request, state),
        "seg": rendering.segment_views(state.segments, state.flags, only=[index], expand=expand)[0],
    }
    return render(request, "ui/trajectory.html#segment", context)


@dataclass(frozen=True)
class Editor:
    kind: str  # "code" or "text"
    value: str
    prefix: str  # kept in front of the edited text (the <think> or </think> marker)
    rows: int


def _editor(segment: fmt.Segment) -> Editor:
    if segment.kind == "code":
        value, prefix, kind = segment.body, "", "code"
    else:
        prefix = rendering.display_prefix(segment)
        value, kind = segment.text[len(prefix) :], "text"
    return Editor(kind, value, prefix, min(max(value.count("\n") + 2, 4), 40))


@require_http_methods(["GET", "POST"])
@permission(CHANGE)
@vary_on_headers("HX-Request")
@handles_domain_errors
def segment_edit(request: HttpRequest, pk: int, index: int) -> HttpResponse:
    """GET: the segment as an editor. POST: save it (a code cell may be run at once)."""
    trajectory = _trajectory(pk)
    segments = _segment_or_404(trajectory, index)
    target = segments[index]
    if target.kind == "output":
        raise ValueError("outputs come from running the cell: edit the cell and run it")
    if request.method == "GET":
        if not request.htmx:
            return _page(request, trajectory, editing=index)
        _check_version(request, trajectory)
        state = _state(trajectory, {index})
        context = {
            **_side_context(request, state),
            "seg": rendering.segment_views(state.segments, state.flags, only=[index])[0],
            "editing": index,
            "editor": _editor(target),
        }
        return render(request, "ui/trajectory.html#segment", context)
    field = "code" if target.kind == "code" else "text"
    try:
        before = _before(request, trajectory)
        if target.kind == "code":
            form = _valid(forms.CodeForm, request.POST)
            result = review.trajectory_edit_code(
                trajectory=trajectory,
                segment_index=index,
                code=form.cleaned_data["code"],
                author=request.user,
                base_version=form.cleaned_data["base_version"],
                rerun=form.cleaned_data["run"],
            )
        else:
            form = _valid(forms.TextForm, request.POST)
            result = review.trajectory_edit_segment(
                trajectory=trajectory,
                segment_index=index,
                text=rendering.display_prefix(target) + form.cleaned_data["text"],
                author=request.user,
                base_version=form.cleaned_data["base_version"],
            )
    except review.StaleVersionError as exc:
        if not request.htmx:
            raise
        yours = request.POST.get(field, "")
        return _conflict(request, str(exc), _trajectory(pk), index=index, field=field, yours=yours)
    return _changes(request, before, result.trajectory, touched={index})


def _conflict(
    request: HttpRequest,
    message: str,
    trajectory: Trajectory,
    *,
    index: int,
    field: str,
    yours: str,
) -> HttpResponse:
    """A save that met a newer version (409): the alert, and a merge panel that keeps the typed
    text beside the current one, with their diff; from there the user saves theirs over it
    (a plain form carrying the new version) or keeps the new one."""
    segments = review.trajectory_segments(trajectory)
    current = segments[index] if index < len(segments) else None
    theirs = None
    if (
        current is not None
        and current.kind != "output"
        and (current.kind == "code") == (field == "code")
    ):
        theirs = _editor(current).value
    panel = {
        "kind": "conflict",
        "message": message,
        "label": "the cell" if field == "code" else "the text",
        "ref": str(index),
        "field": field,
        "yours": yours,
        "theirs": theirs,
        "version": trajectory.version,
        "lines": _diff_lines(theirs, yours, "theirs", "yours") if theirs is not None else [],
    }
    context = {
        "t": trajectory,
        "t_url": reverse("ui:trajectory", args=[trajectory.pk]),
        "panel": panel,
        "query": forms.filters_query(_filters(request)),
        "can_edit": True,
        "oob": True,
    }
    alert = {"message": message, "level": "error", "reload": True}
    body = render_to_string("ui/base.html#alert", alert, request) + render_to_string(
        "ui/trajectory.html#panel", context, request
    )
    return reswap(retarget(HttpResponse(body, status=409), "#alerts"), "innerHTML")


def _before(request: HttpRequest, trajectory: Trajectory) -> PageState:
    """The state the user's page shows, for working out what an edit changed."""
    _check_version(request, trajectory)
    return _state(trajectory)


def _changes(
    request: HttpRequest,
    before: PageState,
    trajectory: Trajectory,
    *,
    touched: Iterable[int] = (),
    close_panel: bool = False,
) -> HttpResponse:
    """After a change: swap the segments whose rendering changed (all of them when segments
    were added or removed, since their indices shift), and the sidebar, out of band."""
    if not request.htmx:
        anchor = f"#seg-{min(touched)}" if touched else ""
        return redirect(_page_url(trajectory.pk, request, anchor))
    trajectory = _trajectory(trajectory.pk)
    after = _state(trajectory)
    same_shape = [s.kind for s in before.segments] == [s.kind for s in after.segments]
    if same_shape:
        changed = {
            i for i, (a, b) in enumerate(zip(before.keys, after.keys, strict=True)) if a != b
        }
        changed |= set(touched)
        segments = rendering.segment_views(after.segments, after.flags, only=changed)
    else:
        segments = rendering.segment_views(after.segments, after.flags)
    context = {
        **_side_context(request, after),
        "changed": segments,
        "full": not same_shape,
        "segments": segments,
        "close_panel": close_panel,
    }
    return render(request, "ui/trajectory.html#changes", context)


@require_POST
@permission(CHANGE)
@handles_domain_errors
def segment_run(request: HttpRequest, pk: int, index: int) -> HttpResponse:
    """Run a cell again in the sandbox; its output block is replaced (`following`: later too)."""
    trajectory = _trajectory(pk)
    _segment_or_404(trajectory, index)
    form = _valid(forms.RunForm, request.POST)
    before = _before(request, trajectory)
    result = review.trajectory_rerun_cell(
        trajectory=trajectory,
        segment_index=index,
        author=request.user,
        base_version=form.cleaned_data["base_version"],
        following=form.cleaned_data["following"],
    )
    return _changes(request, before, result.trajectory, touched={index})


@require_POST
@permission(CHANGE)
@handles_domain_errors
def segment_delete(request: HttpRequest, pk: int, index: int) -> HttpResponse:
    trajectory = _trajectory(pk)
    _segment_or_404(trajectory, index)
    form = _valid(forms.VersionForm, request.POST)
    before = _before(request, trajectory)
    result = review.trajectory_delete_segment(
        trajectory=trajectory,
        segment_index=index,
        author=request.user,
        base_version=form.cleaned_data["base_version"],
    )
    return _changes(request, before, result.trajectory)


@require_POST
@permission(CHANGE)
@handles_domain_errors
def segment_keep(request: HttpRequest, pk: int, index: int) -> HttpResponse:
    """Keep a stale output block as it is, for the reason the annotator gives."""
    trajectory = _trajectory(pk)
    _segment_or_404(trajectory, index)
    form = _valid(forms.KeepOutputForm, request.POST)
    before = _before(request, trajectory)
    result = review.trajectory_keep_output(
        trajectory=trajectory,
        segment_index=index,
        reason=form.cleaned_data["reason"],
        author=request.user,
        base_version=form.cleaned_data["base_version"],
    )
    return _changes(request, before, result.trajectory, touched={index})


@require_POST
@permission(CHANGE)
@handles_domain_errors
def fix(request: HttpRequest, pk: int) -> HttpResponse:
    """The quick fix of a flagged placeholder: replace its text, or delete its lines."""
    trajectory = _trajectory(pk)
    form = _valid(forms.FixForm, request.POST)
    before = _before(request, trajectory)
    data = form.cleaned_data
    result = review.trajectory_fix_span(
        trajectory=trajectory,
        start=data["start"],
        end=data["end"],
        replacement=data["replacement"],
        delete_lines=data["delete_lines"],
        author=request.user,
        base_version=data["base_version"],
    )
    spans = fmt.segment_spans(before.segments)
    touched = {i for i in [rendering.segment_of(spans, data["start"])] if i is not None}
    return _changes(request, before, result.trajectory, touched=touched)


@require_http_methods(["GET", "POST"])
@permission(CHANGE)
@vary_on_headers("HX-Request")
@handles_domain_errors
def rename(request: HttpRequest, pk: int) -> HttpResponse:
    """GET: preview renaming an identifier in every cell. POST: apply it."""
    trajectory = _trajectory(pk)
    if request.method == "POST":
        form = _valid(forms.RenameApplyForm, request.POST)
        before = _before(request, trajectory)
        result = review.trajectory_rename_identifier(
            trajectory=trajectory,
            old=form.cleaned_data["old"],
            new=form.cleaned_data["new"],
            in_text=form.cleaned_data["in_text"],
            author=request.user,
            base_version=form.cleaned_data["base_version"],
        )
        return _changes(request, before, result.trajectory, close_panel=True)
    form = _valid(forms.RenameForm, request.GET)
    _check_version(request, trajectory)
    plan = renaming.rename_plan(
        segments=review.trajectory_segments(trajectory),
        old=form.cleaned_data["old"],
        new=form.cleaned_data["new"],
        in_text=form.cleaned_data["in_text"],
    )
    cells = [
        {
            "cell": cell,
            "lines": [
                {
                    "number": change.line,
                    "before": rendering.pieces(change.before, _name_marks(change.before_columns)),
                    "after": rendering.pieces(change.after, _name_marks(change.columns)),
                }
                for change in plan.line_changes(cell)
            ],
        }
        for cell in plan.cells
    ]
    return _panel(request, trajectory, {"kind": "rename", "plan": plan, "cells": cells})


def _name_marks(columns: Iterable[tuple[int, int]]) -> list[rendering.Mark]:
    return [rendering.Mark("rename", "", s, e, "") for s, e in columns]


def _panel(request: HttpRequest, trajectory: Trajectory, panel: dict[str, Any]) -> HttpResponse:
    """A panel above the segments (diff, rename preview, baselines); a whole page without htmx."""
    if not request.htmx:
        return _page(request, trajectory, panel=panel)
    context = {
        "t": trajectory,
        "panel": panel,
        "query": forms.filters_query(_filters(request)),
        "can_edit": request.user.has_perm(CHANGE),
    }
    return render(request, "ui/trajectory.html#panel", context)


@require_POST
@permission(CHANGE)
@handles_domain_errors
def undo(request: HttpRequest, pk: int) -> HttpResponse:
    trajectory = _trajectory(pk)
    form = _valid(forms.VersionForm, request.POST)
    before = _before(request, trajectory)
    result = review.trajectory_undo(
        trajectory=trajectory, author=request.user, base_version=form.cleaned_data["base_version"]
    )
    return _changes(request, before, result.trajectory)


@require_GET
@permission(VIEW)
@vary_on_headers("HX-Request")
def diff(request: HttpRequest, pk: int) -> HttpResponse:
    """The current text against the generated original."""
    trajectory = _trajectory(pk)
    lines = _diff_lines(trajectory.original_text, trajectory.text, "generated", "current")
    return _panel(
        request, trajectory, {"kind": "diff", "title": "Changes since generation", "lines": lines}
    )


@require_GET
@permission(VIEW)
@vary_on_headers("HX-Request")
def revision(request: HttpRequest, pk: int, revision_pk: int) -> HttpResponse:
    """One revision: its text before and after."""
    trajectory = _trajectory(pk)
    rev = get_object_or_404(
        Revision.objects.select_related("author"), pk=revision_pk, trajectory=trajectory
    )
    lines = _diff_lines(rev.before_text, rev.after_text, "before", "after")
    title = f"{rev.action} by {rev.author} at {timezone.localtime(rev.created_at):%Y-%m-%d %H:%M}"
    return _panel(
        request, trajectory, {"kind": "diff", "title": title, "lines": lines, "revision": rev}
    )


def _diff_lines(before: str, after: str, a: str, b: str) -> list[tuple[str, str]]:
    """(css class, line) of a unified diff; the template escapes the lines."""
    classes = {"+": "add", "-": "del", "@": "hunk"}
    diff_lines = difflib.unified_diff(
        before.splitlines(), after.splitlines(), fromfile=a, tofile=b, lineterm="", n=2
    )
    return [
        ("file" if line.startswith(("---", "+++")) else classes.get(line[:1], "ctx"), line)
        for line in diff_lines
    ]


@require_GET
@permission(VIEW)
@vary_on_headers("HX-Request")
def baselines(request: HttpRequest, pk: int) -> HttpResponse:
    """Samples of the same problem without hints, one of them rendered (`show` picks which)."""
    trajectory = _trajectory(pk)
    samples = list(selectors.trajectory_baselines(trajectory=trajectory)[:20])
    shown = None
    wanted = request.GET.get("show", "")
    chosen = next((s for s in samples if str(s.pk) == wanted), samples[0] if samples else None)
    if chosen is not None:
        shown_trajectory = _trajectory(chosen.pk)
        segments = review.trajectory_segments(shown_trajectory)
        shown = {
            "t": shown_trajectory,
            "segments": rendering.segment_views(segments, []),
        }
    return _panel(request, trajectory, {"kind": "baselines", "samples": samples, "shown": shown})


# --- Guidelines and comments ------------------------------------------------------------------


@require_GET
@permission(VIEW)
@vary_on_headers("HX-Request")
def guidelines(request: HttpRequest, pk: int) -> HttpResponse:
    """The guidelines of the datasets this trajectory may go into, Markdown rendered sanitised."""
    trajectory = _trajectory(pk)
    sections = [
        {"name": dataset.name, "html": render_markdown(dataset.guidelines)}
        for dataset in selectors.trajectory_guidelines(trajectory=trajectory)
    ]
    return _panel(request, trajectory, {"kind": "guidelines", "sections": sections})


def _comments_context(
    request: HttpRequest, trajectory: Trajectory, segments: list[fmt.Segment]
) -> dict[str, Any]:
    """The comments card: each comment rendered sanitised, with where it points; the form."""
    cell_numbers = {i: n for n, i in enumerate(_code_indices(segments), start=1)}

    def where(comment: Comment) -> dict[str, Any]:
        if comment.segment_index is not None:
            index = comment.segment_index
            number = cell_numbers.get(index)
            kind = segments[index].kind if index < len(segments) else "segment"
            label = f"cell {number}" if number else f"{kind} (segment {index})"
            return {"label": label, "anchor": f"seg-{index}"}
        if comment.start is not None:
            return {"label": f"characters {comment.start}–{comment.end}", "anchor": ""}
        return {"label": "", "anchor": ""}

    rows = Comment.objects.filter(trajectory_id=trajectory.pk).select_related("author")
    return {
        "t": trajectory,
        "version": str(trajectory.version),
        "query": forms.filters_query(_filters(request)),
        "can_comment": request.user.has_perm(COMMENT),
        "comment_cells": list(cell_numbers.items()),
        "comments": [
            {"c": c, "html": render_markdown(c.body), **where(c)} for c in rows.order_by("id")
        ],
    }


def _code_indices(segments: list[fmt.Segment]) -> list[int]:
    return [i for i, s in enumerate(segments) if s.kind == "code"]


@require_POST
@permission(COMMENT)
@handles_domain_errors
def comment(request: HttpRequest, pk: int) -> HttpResponse:
    """Comment on the trajectory or one of its cells; answers the comments card."""
    data = _valid(forms.CommentForm, request.POST).cleaned_data
    review.trajectory_comment(
        trajectory=_trajectory(pk),
        body=data["body"],
        segment_index=data["segment_index"],
        author=request.user,
        base_version=data["base_version"],
    )
    if not request.htmx:
        return redirect(_page_url(pk, request, anchor="#comments"))
    trajectory = _trajectory(pk)
    context = _comments_context(request, trajectory, review.trajectory_segments(trajectory))
    return render(request, "ui/trajectory.html#comments", context)


# --- Claims and decisions ---------------------------------------------------------------------


@require_POST
@permission(REVIEW)
@handles_domain_errors
def claim(request: HttpRequest, pk: int) -> HttpResponse:
    """Claim the item; `take_over` (curators): even while another annotator holds it."""
    trajectory = review.trajectory_claim(
        trajectory=_trajectory(pk), user=request.user, take_over=bool(request.POST.get("take_over"))
    )
    return _header_response(request, trajectory)


@require_POST
@permission(REVIEW)
@handles_domain_errors
def release(request: HttpRequest, pk: int) -> HttpResponse:
    trajectory = review.trajectory_release(trajectory=_trajectory(pk), user=request.user)
    return _header_response(request, trajectory)


def _header_response(request: HttpRequest, trajectory: Trajectory) -> HttpResponse:
    if not request.htmx:
        return redirect(_page_url(trajectory.pk, request))
    state = _state(_trajectory(trajectory.pk))
    return render(
        request, "ui/trajectory.html#changes", {**_side_context(request, state), "changed": []}
    )


@require_POST
@permission(REVIEW)
@handles_domain_errors
def decide(request: HttpRequest, pk: int) -> HttpResponse:
    """Approve, reject, skip or reopen; with `next`, go on to the next unclaimed item."""
    trajectory = _trajectory(pk)
    form = _valid(forms.DecideForm, request.POST)
    data = form.cleaned_data
    trajectory = review.trajectory_decide(
        trajectory=trajectory,
        decision=data["decision"],
        reason=form.reason_text(),
        user=request.user,
        base_version=data["base_version"],
    )
    if data["next"]:
        return claim_next(request)
    return _header_response(request, trajectory)


# --- The demo's status -------------------------------------------------------------------------


@require_GET
@permission(VIEW)
def demo_status(request: HttpRequest) -> HttpResponse:
    """The banner alone, polled while `make demo` builds its policy (empty when not a demo)."""
    return render(request, "ui/base.html#demo_status")


# --- Progress ---------------------------------------------------------------------------------


@require_GET
@permission(VIEW)
def progress(request: HttpRequest) -> HttpResponse:
    """Reviewed, approved, rejected and pending: per annotator (optionally in one round), per
    round; as bars drawn on the server (SVG). Then the team's figures: agreement where items had
    several reviewers, time on task with decisions per hour as a chart, and assignments (which
    curators make here)."""
    round_id = request.GET.get("round", "")
    round_id = int(round_id) if round_id.isdigit() else None
    annotators = selectors.review_progress_by_annotator(round_id=round_id)
    rounds = selectors.review_progress_by_round()
    time_on_task = selectors.time_on_task(round_id=round_id)
    can_assign = request.user.has_perm(review.ASSIGN_PERMISSION)
    context = {
        "annotators": _bars(annotators, "name"),
        "rounds": _bars(rounds, "name"),
        "round_id": round_id,
        "round_choices": [(r["id"], r["name"]) for r in rounds],
        "agreement": selectors.review_agreement(round_id=round_id),
        "time_on_task": time_on_task,
        "hourly_chart": _hourly_chart(time_on_task["hourly"]),
        "assignments": selectors.assignments_progress(),
        "assign_form": forms.AssignForm(rounds=rounds) if can_assign else None,
        "nav": "progress",
    }
    return render(request, "ui/progress.html", context)


@require_POST
@permission(review.ASSIGN_PERMISSION)
@handles_domain_errors
def assign(request: HttpRequest) -> HttpResponse:
    """A curator gives an annotator a quota of a round's pending candidates."""
    form = forms.AssignForm(request.POST, rounds=selectors.review_progress_by_round())
    if not form.is_valid():
        raise ValueError("; ".join(e for errors in form.errors.values() for e in errors))
    data = form.cleaned_data
    assignment = review.assignment_create(
        annotator=data["annotator"],
        filters=selectors.QueueFilters(round=int(data["round"]) if data["round"] else None),
        quota=data["quota"],
        user=request.user,
    )
    messages.success(request, f"Assigned {assignment.quota} items to {assignment.annotator}.")
    return redirect("ui:progress")


def _hourly_chart(hourly: dict[str, list[tuple[Any, int]]]) -> dict[str, Any] | None:
    """Decisions per hour, one line per annotator, hours counted from the first decision's."""
    hours = sorted({hour for points in hourly.values() for hour, _ in points})
    if not hours:
        return None
    first = hours[0]

    def offset(hour: Any) -> float:
        return (hour - first).total_seconds() / 3600

    return charts.line_chart(
        [
            charts.Series(
                who, [(offset(h), n) for h, n in points], f"chart-{'abcdef'[i % 6]}", dots=True
            )
            for i, (who, points) in enumerate(hourly.items())
        ],
        height=180,
        x_label=f"hours since {timezone.localtime(first):%b %d, %H:00}",
        y_label="decisions",
    )


CHART_WIDTH = 420
_SEGMENT_ORDER = ("approved", "rejected", "skipped", "pending")


def _bars(rows: list[dict[str, Any]], label: str) -> list[dict[str, Any]]:
    """Each row with its stacked bar: (status, x, width) in pixels of a CHART_WIDTH scale."""
    biggest = max((r["total"] for r in rows), default=0) or 1
    result = []
    for row in rows:
        x = 0.0
        parts = []
        for status in _SEGMENT_ORDER:
            width = CHART_WIDTH * row[status] / biggest
            if width:
                parts.append(
                    {"status": status, "x": round(x, 1), "width": round(width, 1), "n": row[status]}
                )
            x += width
        result.append({**row, "label": row[label], "parts": parts})
    return result
