"""The curators' admin: import problems, create and launch rounds and watch them run, curate and
freeze datasets, launch SFT jobs and follow their loss, see where each policy came from.

Every write goes through a service (`curation.services`, `curation.datasets`,
`curation.importing`). Pages work without JavaScript and under the enforced CSP (no inline script
or style): htmx, served from static files, only refreshes the progress partials while a round or
a job runs, and every polled partial also has a plain link.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import admin as auth_admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST
from django.views.decorators.vary import vary_on_headers

from curation import models, selectors, services
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
    CompareForm,
    EvaluationFilterForm,
    EvaluationSweepForm,
    FreezeForm,
    ProblemImportForm,
    RoundForm,
    SFTJobForm,
    csv_download,
)
from curation.importing import MAX_REPORTED_ERRORS, problem_set_import_upload
from curation.models import (
    ReviewStatus,
    RoundKind,
)
from curation.roles import roles_change_record, roles_snapshot

POLL_SECONDS = 3
CANDIDATES_SHOWN = 50


def _page(
    model_admin: admin.ModelAdmin, request: HttpRequest, template: str, **context: Any
) -> TemplateResponse:
    """A custom admin page with the admin's chrome (site header, breadcrumbs, permissions)."""
    base = {**model_admin.admin_site.each_context(request), "opts": model_admin.model._meta}
    return TemplateResponse(request, template, {**base, **context})


def _change_url(obj: Any) -> str:
    return reverse(f"admin:curation_{obj._meta.model_name}_change", args=[obj.pk])


# --- Problem sets -----------------------------------------------------------------------------


@admin.register(models.ProblemSet)
class ProblemSetAdmin(admin.ModelAdmin):
    list_display = ["name", "source", "problem_count", "created_at"]
    search_fields = ["name", "description", "source"]
    change_list_template = "admin/curation/problemset/change_list.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(problem_count=Count("problems"))

    @admin.display(ordering="problem_count", description="problems")
    def problem_count(self, problem_set: models.ProblemSet) -> int:
        return problem_set.problem_count

    def get_urls(self):
        view = self.admin_site.admin_view(self.import_view)
        return [path("import/", view, name="curation_problemset_import"), *super().get_urls()]

    def import_view(self, request: HttpRequest) -> HttpResponse:
        """Validate the whole file, then import all of it or nothing; list the rejected lines."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ProblemImportForm(request.POST or None, request.FILES or None)
        report = None
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            report = problem_set_import_upload(
                upload=data["file"],
                name=data["name"],
                split=data["split"],
                default_domain=data["domain"] or None,
                id_field=data["id_field"] or None,
                format=data["format"] or None,
            )
            if report.ok:
                problem_set = models.ProblemSet.objects.get(name=report.problem_set)
                self.message_user(
                    request,
                    f"{report.problem_set}: {report.created} problems created, "
                    f"{report.updated} updated ({report.notes()}).",
                    messages.SUCCESS,
                )
                changelist = reverse("admin:curation_problem_changelist")
                return redirect(f"{changelist}?problem_set__id__exact={problem_set.pk}")
        return _page(
            self,
            request,
            "admin/curation/problemset/import.html",
            title="Import problems",
            form=form,
            report=report,
            errors=report.errors[:MAX_REPORTED_ERRORS] if report else [],
            more_errors=max(len(report.errors) - MAX_REPORTED_ERRORS, 0) if report else 0,
        )


@admin.register(models.Problem)
class ProblemAdmin(admin.ModelAdmin):
    list_display = ["external_id", "problem_set", "domain", "split"]
    list_filter = ["problem_set", "domain", "split"]
    search_fields = ["external_id", "prompt"]
    list_select_related = ["problem_set"]


# --- Policies ---------------------------------------------------------------------------------


@admin.register(models.Policy)
class PolicyAdmin(admin.ModelAdmin):
    list_display = ["name", "path", "parent", "made_by_job", "created_at"]
    list_filter = ["created_at"]
    search_fields = ["name", "path"]
    list_select_related = ["parent", "made_by"]
    raw_id_fields = ["parent"]
    readonly_fields = ["made_by_job", "lineage", "created_at"]

    @admin.display(description="made by")
    def made_by_job(self, policy: models.Policy) -> str:
        job = getattr(policy, "made_by", None)
        if job is None:
            return "—"
        return format_html(
            '<a href="{}">SFT job {}</a> on {}', _change_url(job), job.pk, job.dataset_version
        )

    @admin.display(description="parent chain")
    def lineage(self, policy: models.Policy) -> str:
        names, seen, parent = [], {policy.pk}, policy.parent
        while parent is not None and parent.pk not in seen:
            names.append(parent.name)
            seen.add(parent.pk)
            parent = parent.parent
        return " ← ".join([policy.name, *names])

    def get_fields(self, request: HttpRequest, obj: models.Policy | None = None):
        # Registering takes what `policy_register` takes; metrics come from jobs and evals.
        return super().get_fields(request, obj) if obj is not None else ["name", "path", "parent"]

    def save_model(self, request: HttpRequest, obj: models.Policy, form, change: bool) -> None:
        """A new policy is registered through the service (and the audit log)."""
        if change:
            super().save_model(request, obj, form, change)
            return
        policy = services.policy_register(
            name=obj.name, path=obj.path, parent=obj.parent, user=request.user
        )
        obj.pk = policy.pk
        obj.refresh_from_db()


@admin.register(models.HintTemplate)
class HintTemplateAdmin(admin.ModelAdmin):
    """Edits go through the services, which record each wording in the audit log."""

    list_display = ["name", "domain", "enabled"]
    list_filter = ["domain", "enabled"]
    search_fields = ["name", "text"]

    def save_model(self, request: HttpRequest, obj: models.HintTemplate, form, change) -> None:
        services.hint_template_save(template=obj, user=request.user)

    def delete_model(self, request: HttpRequest, obj: models.HintTemplate) -> None:
        services.hint_template_delete(template=obj, user=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for template in queryset:
            services.hint_template_delete(template=template, user=request.user)


# --- Rounds -----------------------------------------------------------------------------------


def _run_on_rounds(request: HttpRequest, rounds, action: str) -> None:
    """Launch, cancel or re-run each round; a refusal (ConflictError) is a message, not a 500."""
    for round_ in rounds:
        try:
            if action == "launch":
                round_ = services.round_launch(
                    round=round_, chunk_size=settings.ROLLOUT_CHUNK_SIZE, user=request.user
                )
                text = f"{round_.name}: launched, {round_.total} trajectories planned."
            elif action == "cancel":
                round_ = services.round_cancel(round=round_, user=request.user)
                text = f"{round_.name}: {round_.get_status_display().lower()}."
            else:
                count = services.round_rerun_failed(round=round_, user=request.user)
                text = f"{round_.name}: {count} unfinished chunks enqueued again."
        except services.ConflictError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, text)


@admin.register(models.Round)
class RoundAdmin(admin.ModelAdmin):
    form = RoundForm
    list_display = ["name", "kind", "policy", "status", "done_of_total", "created_at", "watch"]
    list_filter = ["kind", "status", "policy"]
    search_fields = ["name"]
    filter_horizontal = ["problem_sets"]
    list_select_related = ["policy"]
    actions = ["launch_rounds", "cancel_rounds", "rerun_failed_chunks"]
    change_form_template = "admin/curation/round/change_form.html"
    change_list_template = "admin/curation/round/change_list.html"
    fieldsets = [
        (None, {"fields": ["name", "kind", "policy", "problem_sets", "split", "reviews_required"]}),
        (
            "Sampling",
            {"fields": ["samples_hinted", "samples_plain", "temperature", "top_p", "max_tokens"]},
        ),
        (
            "Hints",
            {
                "fields": [
                    "hints",
                    "conjunctions",
                    "conjunction_probability",
                    "max_hints",
                    "end_of_thinking",
                    "end_repeats",
                    "hint_texts",
                ]
            },
        ),
        ("Tools", {"fields": ["max_tool_calls", "timeout_s", "memory_mb", "notebook", "run_code"]}),
    ]

    @admin.display(description="Hint texts")
    def hint_texts(self, round_: models.Round) -> str:
        """The exact texts the round inserts: its snapshot of the library, taken at launch."""
        library = (round_.hint_config or {}).get("library")
        if not library:
            return "Copied from the enabled hint templates when the round is launched."
        return format_html_join(
            "",
            '<p><strong>{}</strong> ({})<br><code class="hint-text">{}</code></p>',
            ((hint["name"], hint["domain"], hint["text"]) for hint in library),
        )

    def save_model(
        self, request: HttpRequest, obj: models.Round, form: RoundForm, change: bool
    ) -> None:
        """A new round is made by `round_create`, as from the API and `launch_round`."""
        if change:
            super().save_model(request, obj, form, change)
            return
        created = services.round_create(
            name=obj.name,
            kind=obj.kind,
            policy=obj.policy,
            problem_sets=form.cleaned_data["problem_sets"],
            user=request.user,
            **form.settings,
        )
        obj.pk, obj._state.adding = created.pk, False  # the admin redirects to it

    def save_related(self, request: HttpRequest, form, formsets, change: bool) -> None:
        if change:  # round_create set a new round's problem sets
            super().save_related(request, form, formsets, change)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(done=Count("trajectories"))

    @admin.display(description="done / total")
    def done_of_total(self, round_: models.Round) -> str:
        return f"{round_.done} / {round_.total}"

    @admin.display(description="")
    def watch(self, round_: models.Round) -> str:
        return format_html('<a href="{}">Progress</a>', self._url("progress", round_))

    def has_launch_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("curation.launch_round")

    # A queued or running round keeps the settings it was launched with: shown, not editable.
    ACTIVE_FIELDS = [*RoundForm.Meta.fields, "hint_config", "tool_config", "status", "total"]

    def get_readonly_fields(self, request: HttpRequest, obj: models.Round | None = None):
        return (
            [*self.ACTIVE_FIELDS, "hint_texts"]
            if obj is not None and obj.is_active
            else ["hint_texts"]
        )

    def get_form(self, request: HttpRequest, obj: models.Round | None = None, **kwargs: Any):
        if obj is not None and obj.is_active:
            kwargs["form"] = forms.ModelForm  # every field is read only
        return super().get_form(request, obj, **kwargs)

    def get_fieldsets(self, request: HttpRequest, obj: models.Round | None = None):
        if obj is not None and obj.is_active:
            return [(None, {"fields": [*self.ACTIVE_FIELDS, "hint_texts"]})]
        return self.fieldsets

    @admin.action(description="Launch selected rounds", permissions=["launch"])
    def launch_rounds(self, request: HttpRequest, queryset: QuerySet) -> None:
        _run_on_rounds(request, queryset, "launch")

    @admin.action(description="Cancel selected rounds", permissions=["launch"])
    def cancel_rounds(self, request: HttpRequest, queryset: QuerySet) -> None:
        _run_on_rounds(request, queryset, "cancel")

    @admin.action(description="Re-run failed chunks of selected rounds", permissions=["launch"])
    def rerun_failed_chunks(self, request: HttpRequest, queryset: QuerySet) -> None:
        _run_on_rounds(request, queryset, "rerun")

    def _url(self, name: str, round_: models.Round) -> str:
        return reverse(f"admin:curation_round_{name}", args=[round_.pk])

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("evaluation/", wrap(self.evaluation_view), name="curation_round_evaluation"),
            path("sweep/", wrap(self.sweep_view), name="curation_round_sweep"),
            path("<int:pk>/progress/", wrap(self.progress_view), name="curation_round_progress"),
            path(
                "<int:pk>/launch/",
                wrap(self.run_view),
                {"action": "launch"},
                name="curation_round_launch",
            ),
            path(
                "<int:pk>/cancel/",
                wrap(self.run_view),
                {"action": "cancel"},
                name="curation_round_cancel",
            ),
            path(
                "<int:pk>/rerun/",
                wrap(self.run_view),
                {"action": "rerun"},
                name="curation_round_rerun",
            ),
            *super().get_urls(),
        ]

    @vary_on_headers("HX-Request")
    def progress_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The round's live progress; htmx polls the partial while the round runs."""
        round_ = get_object_or_404(models.Round.objects.select_related("policy"), pk=pk)
        if not self.has_view_permission(request, round_):
            raise PermissionDenied
        if round_.is_active:
            services.round_chunks_recover()  # a lost worker is noticed while someone watches
        template = "admin/curation/round/progress.html"
        context = {
            "round": round_,
            "progress": selectors.round_progress(round=round_),
            "poll_seconds": POLL_SECONDS,
            "can_launch": self.has_launch_permission(request),
        }
        if request.headers.get("HX-Request"):
            return TemplateResponse(request, f"{template}#progress", context)
        return _page(self, request, template, title=f"Round {round_.name}", **context)

    def run_view(self, request: HttpRequest, pk: int, action: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseRedirect(reverse("admin:curation_round_progress", args=[pk]))
        if not self.has_launch_permission(request):
            raise PermissionDenied
        round_ = get_object_or_404(models.Round, pk=pk)
        _run_on_rounds(request, [round_], action)
        return redirect(self._url("progress", round_))

    def evaluation_view(self, request: HttpRequest) -> HttpResponse:
        """The eval rounds' table (rows per policy and setting, columns per problem set) and
        the test-time scaling chart; `?format=csv` downloads the table."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = EvaluationFilterForm(request.GET or None)
        table = form.table()
        if request.GET.get("format") == "csv":
            return csv_download(table.to_csv(), "evaluation.csv")
        csv_query = request.GET.copy()
        csv_query["format"] = "csv"
        return _page(
            self,
            request,
            "admin/curation/round/evaluation.html",
            title="Evaluation",
            form=form,
            table=table,
            chart=scaling_chart(scaling_series(table)),
            csv_url=f"?{csv_query.urlencode()}",
            can_sweep=self.has_launch_permission(request),
        )

    def sweep_view(self, request: HttpRequest) -> HttpResponse:
        """Launch an eval sweep over end-of-thinking hint repeats (one round per count)."""
        if not (self.has_launch_permission(request) and self.has_add_permission(request)):
            raise PermissionDenied
        form = EvaluationSweepForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                rounds = services.evaluation_sweep_launch(
                    name=data["name"],
                    policy=data["policy"],
                    problem_sets=data["problem_sets"],
                    end_repeats=data["end_repeats"],
                    samples=data["samples"],
                    temperature=data["temperature"],
                    max_tokens=data["max_tokens"],
                    split=data["split"],
                    user=request.user,
                )
            except services.SettingError as exc:
                form.add_error(exc.field if exc.field in form.fields else None, str(exc))
            except services.ConflictError as exc:
                form.add_error(None, str(exc))
            else:
                names = ", ".join(r.name for r in rounds)
                messages.success(request, f"Sweep launched: {names}.")
                return redirect("admin:curation_round_evaluation")
        return _page(
            self,
            request,
            "admin/curation/round/sweep.html",
            title="Launch an eval sweep",
            form=form,
        )


class ReadOnlyAdmin(admin.ModelAdmin):
    """Shows rows; every change goes through the services that keep the review's rules."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(models.Trajectory)
class TrajectoryAdmin(ReadOnlyAdmin):
    """Read-only: text, status, correctness and candidacy change only in the workbench, where
    every edit is a Revision, bumps the version and is scored again."""

    list_display = [
        "id",
        "round",
        "problem",
        "hinted",
        "sample_index",
        "finish_reason",
        "is_correct",
        "flag_count",
        "candidate",
        "review_status",
        "workbench",
    ]
    list_filter = ["round", "hinted", "is_correct", "candidate", "review_status", "finish_reason"]
    search_fields = ["problem__external_id", "text"]
    list_select_related = ["round", "problem"]

    @admin.display(description="Review")
    def workbench(self, trajectory: models.Trajectory) -> str:
        url = reverse("ui:trajectory", args=[trajectory.pk])
        return format_html('<a href="{}">open in the workbench</a>', url)

    readonly_fields = ["workbench"]


@admin.register(models.Flag)
class FlagAdmin(ReadOnlyAdmin):
    list_display = ["trajectory", "kind", "message", "start", "end"]
    list_filter = ["kind"]
    search_fields = ["message"]


@admin.register(models.Revision)
class RevisionAdmin(ReadOnlyAdmin):
    list_display = ["trajectory", "action", "author", "created_at"]
    list_filter = ["action", "author"]
    search_fields = ["reason"]


# --- Datasets ---------------------------------------------------------------------------------


@admin.register(models.Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "latest_version", "created_at", "curate"]
    list_filter = ["kind"]
    search_fields = ["name", "description"]
    change_form_template = "admin/curation/dataset/change_form.html"

    @admin.display(description="latest")
    def latest_version(self, dataset: models.Dataset) -> str:
        version = dataset.versions.order_by("-number").first()
        return f"v{version.number} ({version.size} items)" if version else "—"

    @admin.display(description="")
    def curate(self, dataset: models.Dataset) -> str:
        url = reverse("admin:curation_dataset_curate", args=[dataset.pk])
        return format_html('<a href="{}">Candidates and versions</a>', url)

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("<int:pk>/curate/", wrap(self.curate_view), name="curation_dataset_curate"),
            path(
                "<int:pk>/select/<int:round_pk>/",
                wrap(require_POST(self.select_view)),
                name="curation_dataset_select",
            ),
            path(
                "<int:pk>/freeze/",
                wrap(require_POST(self.freeze_view)),
                name="curation_dataset_freeze",
            ),
            *super().get_urls(),
        ]

    def curate_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """Rounds with their selection funnel, the candidates and their review state, the frozen
        versions, and a comparison of two versions."""
        dataset = get_object_or_404(models.Dataset, pk=pk)
        if not self.has_view_permission(request, dataset):
            raise PermissionDenied
        candidate = CANDIDATE_OF_KIND.get(dataset.kind)
        round_kind = ROUND_KIND_OF_DATASET.get(dataset.kind)
        rounds = models.Round.objects.filter(kind=round_kind) if round_kind else []
        candidates = models.Trajectory.objects.candidates(candidate).select_related(
            "problem", "round"
        )
        review_counts = dict(
            candidates.order_by().values_list("review_status").annotate(n=Count("id"))
        )
        versions = list(dataset.versions.select_related("created_by").order_by("number"))
        compare = CompareForm(request.GET or None, numbers=[v.number for v in versions])
        diff = None
        if compare.is_bound and compare.is_valid():
            by_number = {v.number: v for v in versions}
            old, new = (
                by_number[compare.cleaned_data["old"]],
                by_number[compare.cleaned_data["new"]],
            )
            diff = {"old": old, "new": new, **dataset_version_diff(old=old, new=new)}
        return _page(
            self,
            request,
            "admin/curation/dataset/curate.html",
            title=f"Dataset {dataset.name}",
            dataset=dataset,
            rounds=rounds,
            candidates=candidates.order_by("review_status", "id")[:CANDIDATES_SHOWN],
            candidate_total=sum(review_counts.values()),
            review_counts=[(s.label, review_counts.get(s.value, 0)) for s in ReviewStatus],
            versions=versions,
            compare=compare,
            diff=diff,
            freeze=FreezeForm(dataset=dataset),
            can_select=request.user.has_perm("curation.change_round"),
            can_freeze=request.user.has_perm("curation.add_datasetversion"),
        )

    def select_view(self, request: HttpRequest, pk: int, round_pk: int) -> HttpResponse:
        if not request.user.has_perm("curation.change_round"):
            raise PermissionDenied
        dataset = get_object_or_404(models.Dataset, pk=pk)
        round_ = get_object_or_404(models.Round, pk=round_pk)
        select = {RoundKind.SEED: select_seed_candidates, RoundKind.RFT: select_start_candidates}
        if round_.kind not in select:
            messages.error(request, f"{round_.kind} rounds have no candidate selection")
        else:
            chosen = select[round_.kind](round=round_)["chosen"]
            messages.success(request, f"{round_.name}: {len(chosen)} candidates proposed.")
        return redirect("admin:curation_dataset_curate", dataset.pk)

    def freeze_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        if not request.user.has_perm("curation.add_datasetversion"):
            raise PermissionDenied
        dataset = get_object_or_404(models.Dataset, pk=pk)
        form = FreezeForm(request.POST, dataset=dataset)
        if not form.is_valid():
            messages.error(request, " ".join(form.errors["rounds"]))
            return redirect("admin:curation_dataset_curate", dataset.pk)
        try:
            version = dataset_version_freeze(
                dataset=dataset, user=request.user, rounds=form.cleaned_data["rounds"] or None
            )
        except ValueError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(
                request, f"Froze {version}: {version.size} items, hash {version.content_hash[:12]}."
            )
        return redirect("admin:curation_dataset_curate", dataset.pk)


@admin.register(models.DatasetVersion)
class DatasetVersionAdmin(ReadOnlyAdmin):
    """Versions are frozen: they are made by freezing a dataset, and never edited."""

    list_display = ["dataset", "number", "size", "short_hash", "created_by", "created_at"]
    list_filter = ["dataset"]
    search_fields = ["dataset__name", "content_hash"]
    list_select_related = ["dataset", "created_by"]

    @admin.display(description="hash")
    def short_hash(self, version: models.DatasetVersion) -> str:
        return version.content_hash[:12]


# --- SFT jobs ---------------------------------------------------------------------------------


@admin.register(models.SFTJob)
class SFTJobAdmin(admin.ModelAdmin):
    form = SFTJobForm
    list_display = [
        "output_name",
        "dataset_version",
        "base_policy",
        "status",
        "step_of_total",
        "created_at",
        "watch",
    ]
    list_filter = ["status", "base_policy"]
    search_fields = ["output_name"]
    list_select_related = ["dataset_version__dataset", "base_policy"]
    change_form_template = "admin/curation/sftjob/change_form.html"
    readonly_fields = [
        "dataset_version",
        "base_policy",
        "output_name",
        "config",
        "status",
        "step",
        "total_steps",
        "metrics",
        "error",
        "output_policy",
        "worker",
        "command",
        "created_by",
        "created_at",
        "started_at",
        "finished_at",
        "log",
    ]

    @admin.display(description="step")
    def step_of_total(self, job: models.SFTJob) -> str:
        return f"{job.step} / {job.total_steps or '?'}"

    @admin.display(description="")
    def watch(self, job: models.SFTJob) -> str:
        url = reverse("admin:curation_sftjob_progress", args=[job.pk])
        return format_html('<a href="{}">Progress</a>', url)

    def get_fields(self, request: HttpRequest, obj: models.SFTJob | None = None):
        if obj is None:
            return [*SFTJobForm.Meta.fields, *SFTJobForm.HYPERPARAMETERS, "extra_config"]
        return self.readonly_fields

    def get_readonly_fields(self, request: HttpRequest, obj: models.SFTJob | None = None):
        return self.readonly_fields if obj is not None else []

    def get_form(self, request: HttpRequest, obj: models.SFTJob | None = None, **kwargs: Any):
        if obj is not None:
            kwargs["form"] = forms.ModelForm  # a launched job is read only
        return super().get_form(request, obj, **kwargs)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        # The change page shows a job; only cancelling changes it (its own button).
        return obj is None and super().has_change_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: models.SFTJob, form, change: bool) -> None:
        """Launch through the service (it queues the job after commit)."""
        job = services.sft_job_launch(
            dataset_version=form.cleaned_data["dataset_version"],
            base_policy=form.cleaned_data["base_policy"],
            output_name=form.cleaned_data["output_name"],
            config=form.config,
            user=request.user,
        )
        obj.pk = job.pk
        obj.refresh_from_db()

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context=None):
        try:
            return super().add_view(request, form_url, extra_context)
        except services.ConflictError as exc:
            messages.error(request, str(exc))
            return redirect(request.get_full_path())

    def response_add(self, request: HttpRequest, obj: models.SFTJob, post_url_continue=None):
        messages.success(request, f"SFT job {obj.pk} queued: it will register {obj.output_name}.")
        return redirect("admin:curation_sftjob_progress", obj.pk)

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("<int:pk>/progress/", wrap(self.progress_view), name="curation_sftjob_progress"),
            path(
                "<int:pk>/cancel/",
                wrap(require_POST(self.cancel_view)),
                name="curation_sftjob_cancel",
            ),
            path(
                "<int:pk>/rerun/",
                wrap(require_POST(self.rerun_view)),
                name="curation_sftjob_rerun",
            ),
            *super().get_urls(),
        ]

    @vary_on_headers("HX-Request")
    def progress_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """Status, progress and the loss curve; htmx polls the partial while the job runs."""
        job = get_object_or_404(
            models.SFTJob.objects.select_related(
                "dataset_version__dataset", "base_policy", "output_policy"
            ),
            pk=pk,
        )
        if not self.has_view_permission(request, job):
            raise PermissionDenied
        if job.status == models.RunStatus.RUNNING and services.sft_jobs_recover():
            job.refresh_from_db()  # a lost worker is noticed while someone watches
        template = "admin/curation/sftjob/progress.html"
        context = {
            "job": job,
            "active": job.status in models.ACTIVE_STATUSES,
            "can_rerun": job.status in (models.RunStatus.FAILED, models.RunStatus.CANCELLED),
            "fraction": job.step / job.total_steps if job.total_steps else 0,
            "curve": loss_curve(job.history),
            "poll_seconds": POLL_SECONDS,
            "can_cancel": request.user.has_perm("curation.change_sftjob"),
        }
        if request.headers.get("HX-Request"):
            return TemplateResponse(request, f"{template}#status", context)
        return _page(self, request, template, title=f"SFT job {job.pk}", **context)

    def cancel_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        if not request.user.has_perm("curation.change_sftjob"):
            raise PermissionDenied
        job = services.sft_job_cancel(
            job=get_object_or_404(models.SFTJob, pk=pk), user=request.user
        )
        messages.info(request, f"SFT job {job.pk}: {job.get_status_display().lower()}.")
        return redirect("admin:curation_sftjob_progress", job.pk)

    def rerun_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        if not request.user.has_perm("curation.change_sftjob"):
            raise PermissionDenied
        try:
            job = services.sft_job_rerun(
                job=get_object_or_404(models.SFTJob, pk=pk), user=request.user
            )
        except services.ConflictError as exc:
            messages.error(request, str(exc))
        else:
            messages.info(request, f"SFT job {job.pk} queued again.")
        return redirect("admin:curation_sftjob_progress", pk)


def loss_curve(history: list[dict], *, width: int = 600, height: int = 200) -> dict | None:
    """The loss curve as SVG polyline points (server-rendered: no script, no inline style)."""
    points = [
        (p["step"], p["loss"])
        for p in history
        if p.get("loss") is not None and p.get("step") is not None
    ]
    if not points:
        return None
    steps, losses = [s for s, _ in points], [loss for _, loss in points]
    first, last = min(steps), max(steps)
    low, high = min(losses), max(losses)
    x_span, y_span = (last - first) or 1, (high - low) or 1
    pad = 10
    coords = " ".join(
        f"{pad + (s - first) / x_span * (width - 2 * pad):.1f},"
        f"{pad + (high - loss) / y_span * (height - 2 * pad):.1f}"
        for s, loss in points
    )
    return {
        "points": coords,
        "width": width,
        "height": height,
        "first_step": first,
        "last_step": last,
        "low": low,
        "high": high,
        "last_loss": losses[-1],
    }


# --- Roles and the audit log ------------------------------------------------------------------


class RolesAudited(admin.ModelAdmin):
    """Records a change of a user's or a group's roles (groups, permissions, staff and superuser
    flags) in the audit log, within the admin's transaction.

    Groups and permissions are many-to-many: the form saves them in `save_related`, after the
    object itself, so the snapshot before is taken in `save_form`, before either is saved.
    """

    def save_form(self, request: HttpRequest, form, change: bool):
        holder = self.model._default_manager.get(pk=form.instance.pk) if change else None
        form.roles_before = roles_snapshot(holder=holder) if holder else None
        return super().save_form(request, form, change)

    def save_related(self, request: HttpRequest, form, formsets, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        roles_change_record(holder=form.instance, before=form.roles_before, actor=request.user)


User = get_user_model()
admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class UserAdmin(RolesAudited, auth_admin.UserAdmin):
    pass


@admin.register(Group)
class GroupAdmin(RolesAudited, auth_admin.GroupAdmin):
    pass


@admin.register(models.AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """The audit log: written by the services as they act, never by hand."""

    list_display = ["created_at", "actor", "action", "target_type", "target_repr"]
    list_filter = ["action", "actor", "created_at"]
    search_fields = ["target_repr"]
    list_select_related = ["actor"]
    date_hierarchy = "created_at"
