"""REST API: thin views that validate input, call one service or selector, and render the result.

Each viewset names the permission every action needs (`action_permissions`, see
`webapp.api.permissions`); errors are JSON: 400 names the field, 401/403/404/409 say why, and an
unexpected error is a 500 without a traceback.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db.models import Count, Exists, Max, OuterRef, Prefetch, QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotModified,
    HttpResponsePermanentRedirect,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404
from django.urls import resolve
from django.utils.http import parse_etags
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, NotAcceptable, ParseError
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

from curation import bulk, review, selectors
from curation.datasets import (
    dataset_version_diff,
    dataset_version_freeze,
    select_seed_candidates,
    select_start_candidates,
)
from curation.exporting import FORMATS as EXPORT_FORMATS
from curation.exporting import Export, dataset_card
from curation.importing import contains_nul, problem_set_import_upload
from curation.models import (
    AuditEvent,
    Comment,
    Dataset,
    DatasetVersion,
    Flag,
    Policy,
    Problem,
    ProblemSet,
    Round,
    RoundKind,
    SFTJob,
    Suggestion,
    Trajectory,
)
from curation.review import trajectory_decide
from curation.services import (
    ConflictError,
    policy_register,
    round_cancel,
    round_launch,
    round_rerun_failed,
    sft_job_cancel,
    sft_job_launch,
)
from webapp.api import serializers as s
from webapp.api.permissions import ActionPermission
from webapp.api.schema import ApiAutoSchema

log = logging.getLogger(__name__)

ERROR_RESPONSES = {
    400: OpenApiResponse(description="Invalid input: the body names each field in error."),
    401: OpenApiResponse(description="No or invalid credentials."),
    403: OpenApiResponse(description="Authenticated, without the permission this action needs."),
}


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The object is in a state that forbids this action."
    default_code = "conflict"


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, with the domain's refusal (ConflictError) as a 409 once for every view,
    plus a JSON 500 for anything else: logged here, never shown to clients."""
    if isinstance(exc, ConflictError):
        exc = Conflict(str(exc))
    response = drf_exception_handler(exc, context)
    if response is None:
        log.error("API error in %s", type(context.get("view")).__name__, exc_info=exc)
        response = Response(
            {"detail": "Internal server error."}, status=status.HTTP_500_INTERNAL_SERVER_ERROR
        )
    return response


class StorableJSONParser(JSONParser):
    """JSON whose strings Postgres can store: a NUL character (\\u0000) is a 400 here, not a
    database error later."""

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        data = super().parse(stream, media_type, parser_context)
        if contains_nul(data):
            raise ParseError("strings cannot contain NUL (\\u0000) characters")
        return data


class ApiViewSet(viewsets.GenericViewSet):
    permission_classes = [ActionPermission]
    parser_classes = [StorableJSONParser]
    schema = ApiAutoSchema()
    action_permissions: dict[str, str] = {}

    def get_exception_handler(self):
        return exception_handler

    def query(self, serializer_class: type[serializers.Serializer]) -> dict[str, Any]:
        """Validated query parameters; a bad one is a 400 naming it.

        A parameter given empty (`?split=`) is an error too, not silently "no filter".
        """
        params = self.request.query_params
        blank = {name: ["may not be blank"] for name, value in params.items() if value == ""}
        if blank:
            raise serializers.ValidationError(blank)
        serializer = serializer_class(data=params)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data


class SandboxUnavailable(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The sandbox could not run the cell."
    default_code = "sandbox_unavailable"


@contextlib.contextmanager
def _field_errors(field: str) -> Iterator[None]:
    """The domain's refusals of bad input (ValueError) as a 400 naming `field`; a sandbox that
    could not run a cell as a 503. Conflicts pass through to the handler (409)."""
    try:
        yield
    except review.RunFailed as exc:
        raise SandboxUnavailable(str(exc)) from None
    except ValueError as exc:
        raise serializers.ValidationError({field: [str(exc)]}) from None


@csrf_exempt  # it changes nothing; a POST to a wrong URL gets this JSON 404, not a CSRF page
def not_found(request: HttpRequest, path: str = "") -> HttpResponse:
    """JSON 404 for any unknown path under /api/ (Django's own is an HTML page).

    It matches every path, which stops CommonMiddleware's APPEND_SLASH redirect, so it redirects
    a GET without the trailing slash itself when the slashed path exists.
    """
    slashed = request.path_info + "/"
    if request.method in ("GET", "HEAD") and not request.path_info.endswith("/"):
        match = resolve(slashed)
        if match.func is not not_found:
            return HttpResponsePermanentRedirect(request.get_full_path(force_append_slash=True))
    return JsonResponse({"detail": "Not found."}, status=404)


# --- Problems ---------------------------------------------------------------------------------


class ProblemSetViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    """Problem sets, and importing one from a file (all or nothing)."""

    serializer_class = s.ProblemSetSerializer
    lookup_field = "name"
    lookup_value_regex = r"[-\w]+"
    action_permissions = {
        "list": "view_problemset",
        "retrieve": "view_problemset",
        "import_file": "add_problemset",
    }

    def get_queryset(self) -> QuerySet[ProblemSet]:
        return ProblemSet.objects.annotate(problem_count=Count("problems")).order_by("name")

    @extend_schema(
        request={"multipart/form-data": s.ProblemSetImportSerializer},
        responses={
            201: s.ImportReportSerializer,
            400: OpenApiResponse(
                OpenApiTypes.OBJECT,
                description="An import report naming the rejected lines (`errors`), or the form "
                "fields in error.",
            ),
        },
    )
    @action(
        detail=False,
        methods=["post"],
        url_path="import",
        parser_classes=[MultiPartParser, FormParser],
        serializer_class=s.ProblemSetImportSerializer,
    )
    def import_file(self, request: Request) -> Response:
        """Import a JSONL, Parquet, Arrow or CSV file; a bad line imports nothing.

        400 lists every rejected line with why (`errors`: line, error).
        """
        form = s.ProblemSetImportSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        report = problem_set_import_upload(
            upload=data["file"],
            name=data["name"],
            split=data["split"],
            default_domain=data.get("domain"),
            id_field=data.get("id_field"),
            format=data.get("format"),
        )
        body = {
            "problem_set": report.problem_set,
            "created": report.created,
            "updated": report.updated,
            "errors": [{"line": line, "error": why} for line, why in report.errors],
            "format": report.format,
            "unknown_columns": report.unknown_columns,
        }
        return Response(body, status=201 if report.ok else 400)


@extend_schema_view(list=extend_schema(parameters=[s.ProblemFilterSerializer]))
class ProblemViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    """Problems, filtered by set, domain and split."""

    serializer_class = s.ProblemSerializer
    action_permissions = {"list": "view_problem", "retrieve": "view_problem"}

    def get_queryset(self) -> QuerySet[Problem]:
        problems = Problem.objects.select_related("problem_set").order_by("id")
        if self.action != "list":
            return problems
        filters = self.query(s.ProblemFilterSerializer)
        if "problem_set" in filters:
            problems = problems.filter(problem_set__name=filters["problem_set"])
        for name in ("domain", "split"):
            if name in filters:
                problems = problems.filter(**{name: filters[name]})
        return problems


# --- Policies ---------------------------------------------------------------------------------


class PolicyViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    """Registered policies, with the SFT job that made each and its parent chain; register one."""

    serializer_class = s.PolicySerializer
    action_permissions = {"list": "view_policy", "retrieve": "view_policy", "create": "add_policy"}

    def get_queryset(self) -> QuerySet[Policy]:
        return Policy.objects.select_related("parent", "made_by").order_by("created_at", "id")

    @extend_schema(
        request=s.PolicyRegisterSerializer,
        responses={201: s.PolicySerializer, 409: OpenApiTypes.OBJECT},
    )
    def create(self, request: Request) -> Response:
        """Register a model by path or hub id (again with the same path: a no-op; 409 when the
        name is registered with another path)."""
        form = s.PolicyRegisterSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        policy = policy_register(**form.validated_data, user=request.user)
        return Response(self.get_serializer(self.get_queryset().get(pk=policy.pk)).data, 201)


# --- Rounds -----------------------------------------------------------------------------------


def _rounds() -> QuerySet[Round]:
    return (
        Round.objects.select_related("policy", "created_by")
        .prefetch_related("problem_sets")
        .order_by("-created_at", "-id")
    )


class RoundViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, ApiViewSet
):
    """Rounds: create, launch (409 when it already runs), cancel, re-run failed chunks, progress."""

    serializer_class = s.RoundSerializer
    queryset = _rounds()
    action_permissions = {
        "list": "view_round",
        "retrieve": "view_round",
        "progress": "view_round",
        "create": "add_round",
        "launch": "launch_round",
        "cancel": "launch_round",
        "rerun_failed": "launch_round",
        "select_candidates": "change_round",
    }

    def perform_create(self, serializer: s.RoundSerializer) -> None:
        serializer.save(user=self.request.user)

    @extend_schema(request=None, responses={202: s.RoundSerializer, 409: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["post"])
    def launch(self, request: Request, pk: str) -> Response:
        """Plan the chunks and enqueue them; 409 when the round is already queued or running."""
        round_ = round_launch(
            round=self.get_object(), chunk_size=settings.ROLLOUT_CHUNK_SIZE, user=request.user
        )
        return Response(self.get_serializer(_rounds().get(pk=round_.pk)).data, status=202)

    @extend_schema(request=None, responses=s.RoundSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        """Stop a queued or running round (chunks stop between trajectories)."""
        round_ = round_cancel(round=self.get_object(), user=request.user)
        return Response(self.get_serializer(_rounds().get(pk=round_.pk)).data)

    @extend_schema(request=None, responses={202: s.RerunSerializer})
    @action(detail=True, methods=["post"], url_path="rerun-failed")
    def rerun_failed(self, request: Request, pk: str) -> Response:
        """Enqueue the round's unfinished chunks again; finished trajectories are kept."""
        chunks = round_rerun_failed(round=self.get_object(), user=request.user)
        return Response({"chunks": chunks}, status=202)

    @extend_schema(responses=s.RoundProgressSerializer)
    @action(detail=True, methods=["get"])
    def progress(self, request: Request, pk: str) -> Response:
        """Trajectories done of planned, errors, tokens/s and chunk counts."""
        return Response(selectors.round_progress(round=self.get_object()))

    @extend_schema(request=None, responses={200: s.SelectionSerializer, 409: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["post"], url_path="select-candidates")
    def select_candidates(self, request: Request, pk: str) -> Response:
        """Run the round kind's selection rule (D_seed or D_START) and return its funnel."""
        round_ = self.get_object()
        if round_.kind == RoundKind.SEED:
            return Response(select_seed_candidates(round=round_))
        if round_.kind == RoundKind.RFT:
            return Response(select_start_candidates(round=round_))
        raise Conflict(f"{round_.kind} rounds have no candidate selection")


# --- Trajectories -----------------------------------------------------------------------------


@extend_schema_view(list=extend_schema(parameters=[s.TrajectoryFilterSerializer]))
class TrajectoryViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    """Trajectories with filters; the detail adds the text, its segments, the score and flags."""

    lookup_value_regex = r"[0-9]+"  # any other id is the JSON 404 of an unknown path
    action_permissions = {
        "list": "view_trajectory",
        "retrieve": "view_trajectory",
        "decide": "review_trajectory",
        "bulk": "bulk_review_trajectory",
        "edit": "change_trajectory",
        "rerun": "change_trajectory",
        "rename": "change_trajectory",
        "comments": "view_comment",
        "add_comment": "add_comment",
        "suggest": "add_suggestion",
    }

    def get_serializer_class(self) -> type[serializers.Serializer]:
        return s.TrajectoryDetailSerializer if self.action == "retrieve" else s.TrajectorySerializer

    @extend_schema(
        request=s.DecisionSerializer,
        responses={200: s.TrajectorySerializer, 409: OpenApiTypes.OBJECT},
    )
    @action(detail=True, methods=["post"])
    def decide(self, request: Request, pk: str) -> Response:
        """Approve, reject (with a reason), skip or reopen, as the workbench does. 409 says why
        when the version moved on, another annotator holds the claim, or an output is stale."""
        form = s.DecisionSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            trajectory = trajectory_decide(
                trajectory=get_object_or_404(Trajectory, pk=pk),
                user=request.user,
                **form.validated_data,
            )
        except ValueError as exc:
            raise serializers.ValidationError({"reason": [str(exc)]}) from None
        return Response(s.TrajectorySerializer(trajectory).data)

    # The write API: the workbench's services, with the version each write started from. A
    # stale version or another annotator's live claim is a 409 and changes nothing; bad input
    # is a 400 naming the field; a sandbox that cannot run a cell is a 503.

    @extend_schema(
        request=s.EditSerializer,
        responses={200: s.TrajectorySerializer, 409: OpenApiTypes.OBJECT, 503: OpenApiTypes.OBJECT},
    )
    @action(detail=True, methods=["post"])
    def edit(self, request: Request, pk: str) -> Response:
        """Replace a segment's text: a code cell's body (with `rerun`, run it and replace its
        output), or prose, or a hint's wording (rephrased)."""
        data = self._valid(s.EditSerializer)
        trajectory = get_object_or_404(Trajectory, pk=pk)
        segments = review.trajectory_segments(trajectory)
        index = data["segment_index"]
        is_code = 0 <= index < len(segments) and segments[index].kind == "code"
        if data["rerun"] and not is_code:
            raise serializers.ValidationError({"rerun": ["only a code cell runs"]})
        with _field_errors("segment_index"):
            if is_code:
                result = review.trajectory_edit_code(
                    trajectory=trajectory,
                    segment_index=index,
                    code=data["text"],
                    rerun=data["rerun"],
                    author=request.user,
                    base_version=data["base_version"],
                )
            else:
                result = review.trajectory_edit_segment(
                    trajectory=trajectory,
                    segment_index=index,
                    text=data["text"],
                    author=request.user,
                    base_version=data["base_version"],
                )
        return Response(s.TrajectorySerializer(result.trajectory).data)

    @extend_schema(
        request=s.CellRunSerializer,
        responses={200: s.TrajectorySerializer, 409: OpenApiTypes.OBJECT, 503: OpenApiTypes.OBJECT},
    )
    @action(detail=True, methods=["post"])
    def rerun(self, request: Request, pk: str) -> Response:
        """Run a code cell again (with `following`, every later executed cell too) and replace
        its output block with the sandbox's."""
        data = self._valid(s.CellRunSerializer)
        with _field_errors("segment_index"):
            result = review.trajectory_rerun_cell(
                trajectory=get_object_or_404(Trajectory, pk=pk),
                segment_index=data["segment_index"],
                following=data["following"],
                author=request.user,
                base_version=data["base_version"],
            )
        return Response(s.TrajectorySerializer(result.trajectory).data)

    @extend_schema(
        request=s.RenameSerializer,
        responses={200: s.TrajectorySerializer, 409: OpenApiTypes.OBJECT},
    )
    @action(detail=True, methods=["post"])
    def rename(self, request: Request, pk: str) -> Response:
        """Rename an identifier in every code cell (outputs they printed become stale)."""
        data = self._valid(s.RenameSerializer)
        with _field_errors("new"):
            result = review.trajectory_rename_identifier(
                trajectory=get_object_or_404(Trajectory, pk=pk),
                old=data["old"],
                new=data["new"],
                in_text=data["in_text"],
                author=request.user,
                base_version=data["base_version"],
            )
        return Response(s.TrajectorySerializer(result.trajectory).data)

    @extend_schema(responses=s.CommentSerializer(many=True))
    @action(detail=True, methods=["get"])
    def comments(self, request: Request, pk: str) -> Response:
        """Comments on the trajectory, oldest first, each with the version it was written on."""
        trajectory = get_object_or_404(Trajectory, pk=pk)
        rows = Comment.objects.filter(trajectory=trajectory).select_related("author")
        return Response(s.CommentSerializer(rows.order_by("id"), many=True).data)

    @extend_schema(
        request=s.CommentCreateSerializer,
        responses={201: s.CommentSerializer, 409: OpenApiTypes.OBJECT},
    )
    @comments.mapping.post
    def add_comment(self, request: Request, pk: str) -> Response:
        """Comment on the trajectory, on a segment (`segment_index`) or a span (`start`, `end`)
        of the version `base_version`. Markdown; it is rendered sanitised."""
        data = self._valid(s.CommentCreateSerializer)
        with _field_errors(api_settings.NON_FIELD_ERRORS_KEY):
            comment = review.trajectory_comment(
                trajectory=get_object_or_404(Trajectory, pk=pk), author=request.user, **data
            )
        return Response(s.CommentSerializer(comment).data, status=201)

    @extend_schema(
        request=s.SuggestSerializer,
        responses={201: s.SuggestionSerializer, 409: OpenApiTypes.OBJECT},
    )
    @action(detail=True, methods=["post"])
    def suggest(self, request: Request, pk: str) -> Response:
        """Pre-annotate (scripts, LLM judges): propose approving or rejecting this version. The
        annotator sees it in the workbench; the review status does not change."""
        data = self._valid(s.SuggestSerializer)
        suggestion = review.trajectory_suggest(
            trajectory=get_object_or_404(Trajectory, pk=pk), author=request.user, **data
        )
        return Response(s.SuggestionSerializer(suggestion).data, status=201)

    def _valid(self, serializer_class: type[serializers.Serializer]) -> dict[str, Any]:
        form = serializer_class(data=self.request.data)
        form.is_valid(raise_exception=True)
        return form.validated_data

    @extend_schema(
        request=s.BulkActionSerializer,
        responses={200: s.BulkResultSerializer, 400: OpenApiTypes.OBJECT},
    )
    @action(detail=False, methods=["post"])
    def bulk(self, request: Request) -> Response:
        """Curators: approve, reject (with a reason), reassign (release the leases, or lease
        them to `assignee`) or re-score the trajectories `ids`, in one transaction, each with
        the revision a single action writes. Items another annotator holds are skipped (but
        freed by a reassignment), and so are those a single action would refuse: the answer
        lists both."""
        form = s.BulkActionSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        try:
            result = bulk.trajectories_bulk_act(
                action=data["action"],
                trajectory_ids=data["ids"],
                reason=data.get("reason", ""),
                assignee=data.get("assignee"),
                user=request.user,
            )
        except ValueError as exc:
            raise serializers.ValidationError({"detail": [str(exc)]}) from None
        return Response(
            s.BulkResultSerializer(
                {
                    "action": result.action,
                    "done": result.done,
                    "skipped": result.skipped,
                    "held": result.held,
                    "refused": {str(pk): why for pk, why in result.refused.items()},
                    "missing": result.missing,
                }
            ).data
        )

    def get_queryset(self) -> QuerySet[Trajectory]:
        if self.action == "retrieve":
            return Trajectory.objects.prefetch_related(
                Prefetch("flags", queryset=Flag.objects.order_by("start", "id")),
                Prefetch("comments", queryset=Comment.objects.select_related("author")),
            )
        trajectories = Trajectory.objects.defer("text", "original_text").order_by("id")
        filters = self.query(s.TrajectoryFilterSerializer)
        shared = selectors.QueueFilters(
            round=filters.get("round"),
            candidate=filters.get("candidate", ""),
            status=filters.get("review_status", ""),
            correct=s.CORRECTNESS_PARAM.get(filters.get("is_correct"), ""),
            flag=filters.get("flag", ""),
            search=filters.get("search", ""),
        )
        try:
            trajectories = selectors.trajectories_filtered(trajectories, filters=shared)
        except selectors.SearchError as exc:
            raise serializers.ValidationError({"search": [str(exc)]}) from None
        for name in ("problem", "finish_reason"):
            if name in filters:
                trajectories = trajectories.filter(**{name: filters[name]})
        if filters.get("hinted") is not None:
            trajectories = trajectories.filter(hinted=filters["hinted"])
        if filters.get("suggested") is not None:
            judged = Exists(
                Suggestion.objects.filter(trajectory=OuterRef("pk"), version=OuterRef("version"))
            )
            trajectories = trajectories.filter(judged if filters["suggested"] else ~judged)
        if "problem_set" in filters:
            trajectories = trajectories.filter(problem__problem_set__name=filters["problem_set"])
        if "min_flags" in filters:
            trajectories = trajectories.filter(flag_count__gte=filters["min_flags"])
        if "max_flags" in filters:
            trajectories = trajectories.filter(flag_count__lte=filters["max_flags"])
        return trajectories


# --- Datasets ---------------------------------------------------------------------------------


class DatasetViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, ApiViewSet
):
    """Datasets (D_seed, D_START, custom); their versions are under /versions/."""

    serializer_class = s.DatasetSerializer
    lookup_field = "name"
    lookup_value_regex = r"[-\w]+"
    action_permissions = {
        "list": "view_dataset",
        "retrieve": "view_dataset",
        "create": "add_dataset",
    }

    def get_queryset(self) -> QuerySet[Dataset]:
        return Dataset.objects.annotate(latest_version=Max("versions__number")).order_by("name")


class _NoFormatOverride:
    URL_FORMAT_OVERRIDE = None

    def __getattr__(self, name: str) -> Any:
        return getattr(api_settings, name)


class ExportNegotiation(DefaultContentNegotiation):
    """On the export, `?format=` names the file format, not one of DRF's renderers; and since the
    export bypasses renderers, an Accept header that no renderer matches gets JSON errors."""

    settings = _NoFormatOverride()

    def select_renderer(self, request, renderers, format_suffix=None):
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except NotAcceptable:
            return renderers[0], renderers[0].media_type


class DatasetVersionViewSet(mixins.ListModelMixin, ApiViewSet):
    """Frozen versions of one dataset: list, freeze a new one, read, diff and export."""

    serializer_class = s.DatasetVersionSerializer
    lookup_field = "number"
    lookup_value_regex = r"[0-9]+"
    action_permissions = {
        "list": "view_datasetversion",
        "retrieve": "view_datasetversion",
        "diff": "view_datasetversion",
        "export": "view_datasetversion",
        "card": "view_datasetversion",
        "create": "add_datasetversion",
    }

    def get_content_negotiator(self):
        if getattr(self, "action", None) == "export":
            return ExportNegotiation()
        return super().get_content_negotiator()

    def dataset(self) -> Dataset:
        return get_object_or_404(Dataset, name=self.kwargs["dataset_name"])

    def get_queryset(self) -> QuerySet[DatasetVersion]:
        return (
            DatasetVersion.objects.filter(dataset__name=self.kwargs["dataset_name"])
            .select_related("dataset", "created_by")
            .order_by("number")
        )

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        self.dataset()  # an unknown dataset is a 404, not an empty list
        return super().list(request, *args, **kwargs)

    def version(self, number: Any) -> DatasetVersion:
        dataset = self.dataset()
        version = self.get_queryset().filter(number=int(number)).first()
        if version is None:
            raise Http404(f"dataset {dataset.name!r} has no version {number}")
        return version

    def retrieve(self, request: Request, dataset_name: str, number: str) -> Response:
        return Response(self.get_serializer(self.version(number)).data)

    @extend_schema(
        request=s.FreezeSerializer,
        responses={201: s.DatasetVersionSerializer, 409: OpenApiTypes.OBJECT},
    )
    def create(self, request: Request, dataset_name: str) -> Response:
        """Freeze the approved candidates of `rounds` into a new version.

        409 names the reason when the freeze breaks a rule: a round of another kind, nothing
        approved, a D_START problem with more than one approved trajectory, or nothing changed
        since the last version."""
        dataset = self.dataset()
        form = s.FreezeSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        rounds = form.validated_data.get("rounds") or None
        try:
            version = dataset_version_freeze(dataset=dataset, user=request.user, rounds=rounds)
        except ValueError as exc:
            raise Conflict(str(exc)) from None
        return Response(self.get_serializer(version).data, status=201)

    @extend_schema(parameters=[s.DiffQuerySerializer], responses=s.DiffSerializer)
    @action(detail=True, methods=["get"])
    def diff(self, request: Request, dataset_name: str, number: str) -> Response:
        """Trajectory ids added, removed and changed from version `against` to this one."""
        new = self.version(number)
        against = self.query(s.DiffQuerySerializer)["against"]
        old = self.version(against)
        diff = dataset_version_diff(old=old, new=new)
        return Response({"old": old.number, "new": new.number, **diff})

    @extend_schema(
        responses={(200, "text/markdown"): OpenApiTypes.STR, 404: OpenApiTypes.OBJECT},
    )
    @action(detail=True, methods=["get"])
    def card(self, request: Request, dataset_name: str, number: str) -> HttpResponse:
        """The version's dataset card (README.md with Hugging Face YAML metadata: source
        rounds, rules, funnel, content hash, licence), for the layout `export_dataset
        --output-dir` writes."""
        version = self.version(number)
        return HttpResponse(
            dataset_card(version=version), content_type="text/markdown; charset=utf-8"
        )

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "format",
                str,
                enum=[*EXPORT_FORMATS],
                default="messages",
                description="messages: TRL conversational JSONL; prompt_completion: TRL "
                "conversational prompt/completion JSONL; parquet: the messages layout in Parquet; "
                "preference: TRL conversational preference pairs (prompt, chosen, rejected) in "
                "JSONL, the fixes over the generated texts and approved over rejected "
                "trajectories of one problem; preference_parquet: the same in Parquet.",
            )
        ],
        responses={
            (200, "application/x-ndjson"): OpenApiTypes.STR,
            (200, "application/vnd.apache.parquet"): OpenApiTypes.BINARY,
            304: OpenApiResponse(description="Not modified (If-None-Match matched the ETag)."),
            404: OpenApiResponse(description="Unknown dataset or version."),
            **ERROR_RESPONSES,
        },
    )
    @action(detail=True, methods=["get"])
    def export(self, request: Request, dataset_name: str, number: str):
        """Stream a frozen version: one row per item, with ids, score and mask spans.

        The ETag is the version's content hash (plus the format); `X-Row-Count` gives the rows.
        """
        version = self.version(number)
        export = Export(version, self.query(s.ExportQuerySerializer)["format"])
        if {export.etag, "*"} & set(parse_etags(request.headers.get("If-None-Match", ""))):
            return HttpResponseNotModified(headers={"ETag": export.etag})
        response = StreamingHttpResponse(export.chunks(), content_type=export.content_type)
        response["ETag"] = export.etag
        response["X-Row-Count"] = str(export.row_count)
        response["Content-Disposition"] = f'attachment; filename="{export.filename}"'
        return response


# --- SFT jobs ---------------------------------------------------------------------------------


class SFTJobViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, ApiViewSet
):
    """SFT jobs: launch from a frozen version and a base policy, follow status and the loss."""

    serializer_class = s.SFTJobSerializer
    action_permissions = {
        "list": "view_sftjob",
        "retrieve": "view_sftjob",
        "metrics": "view_sftjob",
        "create": "add_sftjob",
        "cancel": "change_sftjob",
    }

    def get_queryset(self) -> QuerySet[SFTJob]:
        return SFTJob.objects.select_related(
            "dataset_version__dataset", "base_policy", "output_policy", "created_by"
        ).order_by("-created_at", "-id")

    @extend_schema(responses={201: s.SFTJobSerializer, 409: OpenApiTypes.OBJECT, **ERROR_RESPONSES})
    def create(self, request: Request) -> Response:
        """Queue a job; 409 when the output name is taken or the version is empty."""
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        job = sft_job_launch(
            dataset_version=data["dataset_version"],
            base_policy=data["base_policy"],
            output_name=data["output_name"],
            config=data["config"],
            user=request.user,
        )
        return Response(self.get_serializer(self.get_queryset().get(pk=job.pk)).data, status=201)

    @extend_schema(responses=s.SFTMetricsSerializer)
    @action(detail=True, methods=["get"])
    def metrics(self, request: Request, pk: str) -> Response:
        """The latest metrics and the loss curve (one point per logged step)."""
        job = self.get_object()
        return Response(
            {
                "status": job.status,
                "step": job.step,
                "total_steps": job.total_steps,
                "metrics": job.metrics,
                "history": job.history,
            }
        )

    @extend_schema(request=None, responses=s.SFTJobSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        """Ask a queued or running job to stop after its current step."""
        job = sft_job_cancel(job=self.get_object(), user=request.user)
        return Response(self.get_serializer(job).data)


# --- Audit log --------------------------------------------------------------------------------


@extend_schema_view(list=extend_schema(parameters=[s.AuditEventFilterSerializer]))
class AuditEventViewSet(mixins.ListModelMixin, ApiViewSet):
    """Curator and admin actions, newest first: who froze, launched, cancelled, registered,
    edited or granted what, and what it changed."""

    serializer_class = s.AuditEventSerializer
    action_permissions = {"list": "view_auditevent"}

    def get_queryset(self) -> QuerySet[AuditEvent]:
        events = AuditEvent.objects.select_related("actor").order_by("-created_at", "-id")
        filters = self.query(s.AuditEventFilterSerializer)
        if "action" in filters:
            events = events.filter(action=filters["action"])
        if "since" in filters:
            events = events.filter(created_at__gte=filters["since"])
        return events
