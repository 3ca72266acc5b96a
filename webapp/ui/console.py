"""The curators' console: rounds, SFT jobs, policies, datasets and problem sets, in the
workbench's look.

Every change goes through the same services as the admin and the API (`round_create`,
`round_launch`, `sft_job_launch`, `dataset_version_freeze`...), with the same forms. Pages of
running work poll their status partial with htmx and stop polling once it reaches a final state;
actions are offered only where they apply, and one posted anyway is refused with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Max
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django.views.decorators.vary import vary_on_headers

from curation import selectors, services
from curation.datasets import (
    CANDIDATE_OF_KIND,
    ROUND_KIND_OF_DATASET,
    dataset_version_diff,
    dataset_version_freeze,
    select_seed_candidates,
    select_start_candidates,
)
from curation.evaluation import scaling_chart, scaling_series
from curation.forms import (
    EvaluationFilterForm,
    EvaluationSweepForm,
    FreezeForm,
    ProblemImportForm,
    RoundForm,
    SFTJobForm,
    csv_download,
)
from curation.importing import problem_set_import_upload
from curation.models import (
    ACTIVE_STATUSES,
    ChunkStatus,
    Dataset,
    DatasetVersion,
    Policy,
    ProblemSet,
    ReviewStatus,
    Round,
    RoundKind,
    RunStatus,
    SFTJob,
    Trajectory,
)
from curation.services import ConflictError
from webapp.ui import charts
from webapp.ui.views import permission

POLL_SECONDS = 2
# The console is the curators' place: annotators, who may read rounds, have the workbench.
CONSOLE = "curation.add_round"
LAUNCH = "curation.launch_round"
ADD_JOB = "curation.add_sftjob"
CHANGE_JOB = "curation.change_sftjob"
FREEZE = "curation.add_datasetversion"
IMPORT = "curation.add_problemset"


@contextmanager
def _refusals_shown(request: HttpRequest) -> Iterator[None]:
    """A service's refusal (a conflict, a bad value) becomes a message on the page the user is
    sent back to; nothing was changed."""
    try:
        yield
    except (ConflictError, ValueError) as exc:
        messages.error(request, str(exc))


def _page(request: HttpRequest, template: str, section: str, **context: Any) -> HttpResponse:
    return render(
        request, f"ui/console/{template}", {"nav": "console", "section": section, **context}
    )


# --- Home -------------------------------------------------------------------------------------


@require_GET
@permission(CONSOLE)
def home(request: HttpRequest) -> HttpResponse:
    """Where the loop stands: the latest rounds and jobs, what waits for a decision."""
    return _page(
        request,
        "home.html",
        "home",
        rounds=Round.objects.select_related("policy")[:5],
        jobs=SFTJob.objects.select_related("base_policy", "dataset_version__dataset")[:5],
        policies=Policy.objects.count(),
        problem_sets=ProblemSet.objects.count(),
        pending=Trajectory.objects.pending_review().count(),
        disputed=Trajectory.objects.filter(review_status=ReviewStatus.DISPUTED).count(),
        datasets=Dataset.objects.annotate(latest=Max("versions__number")),
    )


# --- Rounds -----------------------------------------------------------------------------------


@require_GET
@permission(CONSOLE)
def rounds(request: HttpRequest) -> HttpResponse:
    rows = Round.objects.select_related("policy").annotate(done=Count("trajectories"))
    return _page(request, "rounds.html", "rounds", rounds=rows)


def _round_form(request: HttpRequest) -> RoundForm:
    """A new round's form: the kind and, if there is only one, the policy chosen; with
    `?from=<id>`, every setting of that round (clone with new settings)."""
    source = None
    if request.GET.get("from", "").isdigit():
        source = Round.objects.filter(pk=int(request.GET["from"])).first()
    initial: dict[str, Any] = {"kind": RoundKind.SEED}
    policies = list(Policy.objects.values_list("pk", flat=True)[:2])
    if len(policies) == 1:
        initial["policy"] = policies[0]
    if source is not None:
        tools = source.tool_config or {}
        initial.update(
            name=f"{source.name}-again",
            kind=source.kind,
            policy=source.policy_id,
            problem_sets=list(source.problem_sets.values_list("pk", flat=True)),
            split=source.split,
            reviews_required=source.reviews_required,
            **{name: getattr(source, name) for name in services.ROUND_DEFAULTS[RoundKind.SEED]},
            max_tokens=source.max_tokens,
            **{k: tools[k] for k in ("timeout_s", "memory_mb", "notebook") if k in tools},
        )
        if "max_calls" in tools:
            initial["max_tool_calls"] = tools["max_calls"]
    instance = Round(hint_config=source.hint_config if source else {})
    return RoundForm(instance=instance, initial=initial)


@require_http_methods(["GET", "POST"])
@permission(CONSOLE)
def round_new(request: HttpRequest) -> HttpResponse:
    """One form with the kind's defaults; "Create and launch" launches it at once."""
    if request.method == "GET":
        return _page(request, "round_form.html", "rounds", form=_round_form(request))
    form = RoundForm(request.POST, instance=Round())
    if not form.is_valid():
        return _page(request, "round_form.html", "rounds", form=form)
    round_ = services.round_create(
        name=form.cleaned_data["name"],
        kind=form.cleaned_data["kind"],
        policy=form.cleaned_data["policy"],
        problem_sets=form.cleaned_data["problem_sets"],
        user=request.user,
        **form.settings,
    )
    if "launch" in request.POST:
        if not request.user.has_perm(LAUNCH):
            messages.error(request, "Created; launching needs the right to launch rounds.")
        else:
            with _refusals_shown(request):
                _round_action(request, round_, "launch")
    else:
        messages.success(request, f"{round_.name}: created as a draft.")
    return redirect("console:round", round_.pk)


def _stalled(round_: Round) -> str:
    """A running round whose running chunks have not beaten for a while says so (its worker
    may be gone; after CHUNK_LOST_AFTER_S the chunk goes back on the queue by itself)."""
    if round_.status != RunStatus.RUNNING:
        return ""
    last = round_.chunks.filter(status=ChunkStatus.RUNNING).aggregate(at=Max("heartbeat_at"))["at"]
    if last is None:
        return ""
    silent = (timezone.now() - last).total_seconds()
    if silent < 3 * services.CHUNK_HEARTBEAT_S:
        return ""
    return f"no sign of life from its worker for {silent:.0f} s"


@require_GET
@permission(CONSOLE)
@vary_on_headers("HX-Request")
def round_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """Live progress (tokens/s, chunks, errors, lost workers) and the actions that apply."""
    round_ = get_object_or_404(Round.objects.select_related("policy"), pk=pk)
    if round_.is_active:
        services.round_chunks_recover()  # a lost worker is noticed while someone watches
        round_.refresh_from_db()
    progress = selectors.round_progress(round=round_)
    context = {
        "round": round_,
        "progress": progress,
        "stalled": _stalled(round_),
        "poll_seconds": POLL_SECONDS,
        "can_launch": request.user.has_perm(LAUNCH),
        "can_rerun": not round_.is_active
        and round_.status != RunStatus.DRAFT
        and bool(progress["chunks"][ChunkStatus.FAILED] or progress["chunks"][ChunkStatus.PENDING]),
        "hint_library": (round_.hint_config or {}).get("library", []),
    }
    if request.htmx:
        return render(request, "ui/console/round.html#progress", context)
    return _page(request, "round.html", "rounds", **context)


def _round_action(request: HttpRequest, round_: Round, action: str) -> None:
    if action == "launch":
        round_ = services.round_launch(
            round=round_, chunk_size=settings.ROLLOUT_CHUNK_SIZE, user=request.user
        )
        messages.success(request, f"{round_.name}: launched, {round_.total} trajectories planned.")
    elif action == "cancel":
        if not round_.is_active:
            raise ConflictError(f"{round_.name} is {round_.status}: only a running round cancels")
        services.round_cancel(round=round_, user=request.user)
        messages.success(request, f"{round_.name}: cancelled.")
    else:
        if round_.is_active or round_.status == RunStatus.DRAFT:
            raise ConflictError(
                f"{round_.name} is {round_.status}: chunks re-run after a round stopped"
            )
        count = services.round_rerun_failed(round=round_, user=request.user)
        messages.success(request, f"{round_.name}: {count} unfinished chunks enqueued again.")


@require_POST
@permission(LAUNCH)
def round_run(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    with _refusals_shown(request):
        _round_action(request, get_object_or_404(Round, pk=pk), action)
    return redirect("console:round", pk)


# --- SFT jobs ---------------------------------------------------------------------------------


@require_GET
@permission(CONSOLE)
def jobs(request: HttpRequest) -> HttpResponse:
    rows = SFTJob.objects.select_related("base_policy", "output_policy", "dataset_version__dataset")
    return _page(request, "jobs.html", "jobs", jobs=rows)


@require_http_methods(["GET", "POST"])
@permission(ADD_JOB)
def job_new(request: HttpRequest) -> HttpResponse:
    """Launch TRL on a frozen version (`?version=<id>` chooses it)."""
    if request.method == "GET":
        initial: dict[str, Any] = {}
        version = request.GET.get("version", "")
        if version.isdigit():
            initial["dataset_version"] = int(version)
        policies = list(Policy.objects.order_by("-created_at").values_list("pk", flat=True)[:1])
        if policies:
            initial["base_policy"] = policies[0]
        return _page(request, "job_form.html", "jobs", form=SFTJobForm(initial=initial))
    form = SFTJobForm(request.POST)
    if not form.is_valid():
        return _page(request, "job_form.html", "jobs", form=form)
    try:
        job = services.sft_job_launch(
            dataset_version=form.cleaned_data["dataset_version"],
            base_policy=form.cleaned_data["base_policy"],
            output_name=form.cleaned_data["output_name"],
            config=form.config,
            user=request.user,
        )
    except (ConflictError, ValueError) as exc:
        form.add_error(None, str(exc))
        return _page(request, "job_form.html", "jobs", form=form)
    messages.success(request, f"SFT job {job.pk} queued: it trains {job.output_name}.")
    return redirect("console:job", job.pk)


@require_GET
@permission(CONSOLE)
@vary_on_headers("HX-Request")
def job_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """Status, the loss chart (raw, smoothed, the learning rate), the log; cancel while active."""
    job = get_object_or_404(
        SFTJob.objects.select_related("dataset_version__dataset", "base_policy", "output_policy"),
        pk=pk,
    )
    if job.status == RunStatus.RUNNING and services.sft_jobs_recover():
        job.refresh_from_db()  # a lost worker is noticed while someone watches
    context = {
        "job": job,
        "active": job.status in ACTIVE_STATUSES,
        "can_rerun": job.status in (RunStatus.FAILED, RunStatus.CANCELLED),
        "chart": charts.loss_chart(job.history),
        "poll_seconds": POLL_SECONDS,
        "can_change": request.user.has_perm(CHANGE_JOB),
    }
    if request.htmx:
        return render(request, "ui/console/job.html#status", context)
    return _page(request, "job.html", "jobs", **context)


@require_POST
@permission(CHANGE_JOB)
def job_run(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    job = get_object_or_404(SFTJob, pk=pk)
    with _refusals_shown(request):
        if action == "cancel":
            if job.status not in ACTIVE_STATUSES:
                raise ConflictError(f"SFT job {job.pk} is {job.status}: only an active job cancels")
            services.sft_job_cancel(job=job, user=request.user)
            messages.success(request, f"SFT job {job.pk}: cancelled.")
        else:
            services.sft_job_rerun(job=job, user=request.user)
            messages.success(request, f"SFT job {job.pk} queued again.")
    return redirect("console:job", pk)


# --- Policies ---------------------------------------------------------------------------------

LINEAGE_ROW, LINEAGE_COLUMN = 56, 190


def _lineage(policies: list[Policy]) -> dict[str, Any]:
    """The policies as a tree (parent to child), laid out in columns by generation."""
    children: dict[int | None, list[Policy]] = {}
    for policy in policies:
        children.setdefault(policy.parent_id, []).append(policy)
    nodes, edges, row = [], [], 0
    position: dict[int, tuple[int, int]] = {}

    def place(policy: Policy, depth: int) -> None:
        nonlocal row
        x, y = 10 + depth * LINEAGE_COLUMN, 10 + row * LINEAGE_ROW
        position[policy.pk] = (x, y)
        nodes.append({"policy": policy, "x": x, "y": y, "tx": x + 10, "ty": y + 24})
        row += 1
        for child in children.get(policy.pk, []):
            place(child, depth + 1)
            cx, cy = position[child.pk]
            edges.append({"x1": x + 160, "y1": y + 19, "x2": cx, "y2": cy + 19})

    known = {p.pk for p in policies}
    for root in [p for p in policies if p.parent_id not in known]:
        place(root, 0)
    depth = max((n["x"] for n in nodes), default=10) + 170
    return {"nodes": nodes, "edges": edges, "width": depth + 10, "height": 20 + row * LINEAGE_ROW}


class PolicyForm(forms.Form):
    name = forms.CharField(max_length=200)
    path = forms.CharField(max_length=1000, help_text="A folder every host sees, or a hub id.")
    parent = forms.ModelChoiceField(queryset=Policy.objects.all(), required=False)


def _metric(value: float | str) -> str:
    """A metric for reading: 20,120 tokens, a loss of 0.1177, a learning rate of 1.7e-06."""
    if isinstance(value, bool | str):
        return str(value)
    if isinstance(value, int) or (float(value).is_integer() and abs(value) >= 1):
        return f"{value:,.0f}"
    return f"{value:,.1f}" if abs(value) >= 1000 else f"{value:.4g}"


@require_http_methods(["GET", "POST"])
@permission(CONSOLE)
def policies(request: HttpRequest) -> HttpResponse:
    """Lineage as a graph; each policy's metrics as a table; registering a base model."""
    form = PolicyForm()
    if request.method == "POST":
        if not request.user.has_perm("curation.add_policy"):
            raise PermissionDenied
        form = PolicyForm(request.POST)
        if form.is_valid():
            try:
                policy = services.policy_register(user=request.user, **form.cleaned_data)
            except ConflictError as exc:
                form.add_error("path", str(exc))
            else:
                messages.success(request, f"{policy.name}: registered.")
                return redirect("console:policies")
    rows = list(Policy.objects.select_related("parent").order_by("created_at", "id"))
    made_by = {
        job.output_policy_id: job
        for job in SFTJob.objects.filter(output_policy__isnull=False).select_related(
            "dataset_version__dataset"
        )
    }
    for policy in rows:
        policy.job = made_by.get(policy.pk)
        policy.metric_rows = sorted(
            (key, _metric(value))
            for key, value in (policy.metrics or {}).items()
            if isinstance(value, int | float | str) and value != ""
        )
    return _page(
        request, "policies.html", "policies", policies=rows, lineage=_lineage(rows), form=form
    )


# --- Datasets ---------------------------------------------------------------------------------


class DatasetForm(forms.ModelForm):
    class Meta:
        model = Dataset
        fields = ["name", "kind", "description", "guidelines"]


@require_http_methods(["GET", "POST"])
@permission(CONSOLE)
def datasets(request: HttpRequest) -> HttpResponse:
    """The datasets, and a new one (D_seed, D_START or custom) for curators."""
    form = DatasetForm()
    if request.method == "POST":
        if not request.user.has_perm("curation.add_dataset"):
            raise PermissionDenied
        form = DatasetForm(request.POST)
        if form.is_valid():
            dataset = form.save()
            messages.success(request, f"{dataset.name}: created.")
            return redirect("console:dataset", dataset.pk)
    rows = Dataset.objects.annotate(latest=Max("versions__number"), n_versions=Count("versions"))
    return _page(request, "datasets.html", "datasets", datasets=rows, form=form)


FUNNEL_WIDTH = 360


def _funnel_bars(funnel: list[dict]) -> list[dict]:
    """A round's selection funnel (problems at each rule) as bars of a FUNNEL_WIDTH scale."""
    top = max((step.get("count", 0) for step in funnel), default=0) or 1
    return [
        {**step, "width": round(FUNNEL_WIDTH * step.get("count", 0) / top, 1)} for step in funnel
    ]


@require_GET
@permission(CONSOLE)
def dataset_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """Each round's selection funnel as a chart, the candidates' review state, freezing, the
    versions with their exports, and the difference between two versions."""
    dataset = get_object_or_404(Dataset, pk=pk)
    round_kind = ROUND_KIND_OF_DATASET.get(dataset.kind)
    rounds = list(Round.objects.filter(kind=round_kind)) if round_kind else []
    for round_ in rounds:
        round_.funnel_bars = _funnel_bars((round_.selection or {}).get("funnel", []))
    candidates = Trajectory.objects.candidates(CANDIDATE_OF_KIND.get(dataset.kind))
    review_counts = dict(candidates.order_by().values_list("review_status").annotate(n=Count("id")))
    versions = list(dataset.versions.select_related("created_by").order_by("-number"))
    diff = None
    numbers = [v.number for v in versions]
    if len(numbers) >= 2:
        old = int(request.GET.get("old", numbers[1]))
        new = int(request.GET.get("new", numbers[0]))
        by_number = {v.number: v for v in versions}
        if old in by_number and new in by_number:
            diff = {
                "old": by_number[old],
                "new": by_number[new],
                **dataset_version_diff(old=by_number[old], new=by_number[new]),
            }
    base = request.build_absolute_uri("/").rstrip("/")
    for version in versions:
        version.commands = _export_commands(dataset, version, base)
    return _page(
        request,
        "dataset.html",
        "datasets",
        dataset=dataset,
        rounds=rounds,
        review_counts=[(s.label, review_counts.get(s.value, 0)) for s in ReviewStatus],
        versions=versions,
        numbers=numbers,
        diff=diff,
        freeze=FreezeForm(dataset=dataset),
        can_freeze=request.user.has_perm(FREEZE),
        can_select=request.user.has_perm("curation.change_round"),
        can_train=request.user.has_perm(ADD_JOB),
    )


def _export_commands(dataset: Dataset, version: DatasetVersion, base: str) -> list[str]:
    """Copyable commands that fetch this version: the management command (TRL's JSONL, and the
    Hugging Face folder with the preference pairs and the dataset card) and the REST call."""
    url = f"{base}/api/datasets/{dataset.name}/versions/{version.number}/export?format=messages"
    command = f"python manage.py export_dataset {dataset.name} --version {version.number}"
    stem = f"{dataset.name}-v{version.number}"
    return [
        f"{command} --format messages --output {stem}.jsonl",
        f"{command} --output-dir {stem} --file-type parquet --license unknown",
        f'curl -H "Authorization: Token $TOKEN" "{url}"',
    ]


@require_POST
@permission("curation.change_round")
def dataset_select(request: HttpRequest, pk: int, round_pk: int) -> HttpResponse:
    """Propose the round's candidates by the paper's rules (D_seed or D_START)."""
    dataset = get_object_or_404(Dataset, pk=pk)
    round_ = get_object_or_404(Round, pk=round_pk)
    select = {RoundKind.SEED: select_seed_candidates, RoundKind.RFT: select_start_candidates}
    if round_.kind not in select:
        messages.error(request, f"{round_.kind} rounds have no candidate selection")
    else:
        chosen = select[round_.kind](round=round_)["chosen"]
        messages.success(request, f"{round_.name}: {len(chosen)} candidates proposed.")
    return redirect("console:dataset", dataset.pk)


@require_POST
@permission(FREEZE)
def dataset_freeze(request: HttpRequest, pk: int) -> HttpResponse:
    dataset = get_object_or_404(Dataset, pk=pk)
    form = FreezeForm(request.POST, dataset=dataset)
    with _refusals_shown(request):
        if not form.is_valid():
            raise ValueError(" ".join(form.errors["rounds"]))
        version = dataset_version_freeze(
            dataset=dataset, user=request.user, rounds=form.cleaned_data["rounds"] or None
        )
        messages.success(
            request, f"Froze {version}: {version.size} items, hash {version.content_hash[:12]}."
        )
    return redirect("console:dataset", dataset.pk)


# --- Problem sets -----------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@permission(CONSOLE)
def problem_sets(request: HttpRequest) -> HttpResponse:
    """The problem sets, and an import (curators) whose report is shown in full."""
    form, report = ProblemImportForm(), None
    if request.method == "POST":
        if not request.user.has_perm(IMPORT):
            return _forbidden(request)
        form = ProblemImportForm(request.POST, request.FILES)
        if form.is_valid():
            data = form.cleaned_data
            report = problem_set_import_upload(
                upload=data["file"],
                name=data["name"],
                split=data["split"],
                default_domain=data["domain"] or None,
                id_field=data["id_field"] or None,
                format=data.get("format") or None,
            )
            if report.ok:
                messages.success(
                    request,
                    f"{report.problem_set}: {report.created} problems created, "
                    f"{report.updated} updated ({report.notes()}).",
                )
                return redirect("console:problem_sets")
    rows = ProblemSet.objects.annotate(n=Count("problems")).order_by("name")
    return _page(
        request,
        "problem_sets.html",
        "problem_sets",
        problem_sets=rows,
        form=form,
        report=report,
        can_import=request.user.has_perm(IMPORT),
    )


def _forbidden(request: HttpRequest) -> HttpResponse:
    messages.error(request, "Importing needs the curator role.")
    return redirect(reverse("console:problem_sets"))


# --- Evaluation -------------------------------------------------------------------------------


@require_GET
@permission(CONSOLE)
def evaluation(request: HttpRequest) -> HttpResponse:
    """The paper's table from the eval rounds (rows per policy and setting, never merged), the
    test-time scaling chart, and the table as CSV (`?format=csv`)."""
    form = EvaluationFilterForm(request.GET or None)
    table = form.table()
    if request.GET.get("format") == "csv":
        return csv_download(table.to_csv(), "evaluation.csv")
    csv_query = request.GET.copy()
    csv_query["format"] = "csv"
    return _page(
        request,
        "evaluation.html",
        "evaluation",
        form=form,
        table=table,
        chart=scaling_chart(scaling_series(table)),
        csv_url=f"?{csv_query.urlencode()}",
        can_sweep=request.user.has_perm(LAUNCH),
    )


@require_http_methods(["GET", "POST"])
@permission(LAUNCH)
def sweep(request: HttpRequest) -> HttpResponse:
    """One action launches an eval round per number of end-of-thinking hints."""
    form = EvaluationSweepForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            launched = services.evaluation_sweep_launch(user=request.user, **data)
        except services.SettingError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
        except ConflictError as exc:
            form.add_error(None, str(exc))
        else:
            names = ", ".join(r.name for r in launched)
            messages.success(request, f"Sweep launched: {names}.")
            return redirect("console:evaluation")
    return _page(request, "sweep.html", "evaluation", form=form)
