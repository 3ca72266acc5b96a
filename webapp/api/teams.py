"""/api/assignments/ and /api/agreement/: a curator's batches for annotators, and how often
annotators agree. The same services and selectors as the workbench's progress page."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from curation import review, selectors
from curation.models import Assignment, Round
from webapp.api.evaluations import TableSchema
from webapp.api.views import ApiViewSet


class AssignmentSerializer(serializers.ModelSerializer):
    annotator = serializers.SlugRelatedField(
        slug_field="username", queryset=get_user_model().objects.filter(is_active=True)
    )
    round = serializers.PrimaryKeyRelatedField(
        queryset=Round.objects.all(),
        required=False,
        allow_null=True,
        write_only=True,
        help_text="Only this round's candidates; more filters in `filters`.",
    )
    filters = serializers.JSONField(
        required=False,
        help_text="The workbench's queue filters: round, candidate, domain, status, correct, "
        "flag, sort.",
    )
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    done = serializers.IntegerField(read_only=True, help_text="Decisions made so far.")

    class Meta:
        model = Assignment
        fields = [
            "id",
            "annotator",
            "round",
            "filters",
            "quota",
            "done",
            "created_by",
            "created_at",
        ]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        filters = dict(attrs.pop("filters", None) or {})
        if attrs.get("round") is not None:
            filters["round"] = attrs.pop("round").pk
        attrs.pop("round", None)
        try:
            attrs["filters"] = selectors.QueueFilters(**filters)
        except TypeError:
            known = list(selectors.QueueFilters.__dataclass_fields__)
            raise serializers.ValidationError(
                {"filters": f"unknown keys {sorted(set(filters) - set(known))}: {known}"}
            ) from None
        return attrs


class AssignmentViewSet(mixins.ListModelMixin, ApiViewSet):
    """Assignments with their progress; a curator creates one (the annotator must hold the
    annotator role: otherwise 400 naming them)."""

    serializer_class = AssignmentSerializer
    pagination_class = None  # a team has a handful of assignments
    action_permissions = {"list": "view_assignment", "create": "add_assignment"}

    def get_queryset(self):
        return Assignment.objects.select_related("annotator", "created_by")

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        rows = selectors.assignments_progress()
        for row in rows:
            row["assignment"].done = row["done"]
        data = AssignmentSerializer([row["assignment"] for row in rows], many=True).data
        return Response(data)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            assignment = review.assignment_create(user=request.user, **serializer.validated_data)
        except ValueError as exc:
            raise serializers.ValidationError({"annotator": [str(exc)]}) from None
        assignment.done = 0
        return Response(AssignmentSerializer(assignment).data, status=status.HTTP_201_CREATED)


class AgreementQuerySerializer(serializers.Serializer):
    round = serializers.PrimaryKeyRelatedField(queryset=Round.objects.all(), required=False)


class PairSerializer(serializers.Serializer):
    a = serializers.CharField()
    b = serializers.CharField()
    items = serializers.IntegerField(help_text="Items both decided.")
    agreement = serializers.FloatField(help_text="Share decided alike.")
    kappa = serializers.FloatField(allow_null=True, help_text="Cohen's kappa; null if undefined.")


class TimeOnTaskSerializer(serializers.Serializer):
    name = serializers.CharField()
    decisions = serializers.IntegerField()
    per_hour = serializers.FloatField(allow_null=True, help_text="Items per hour on task.")
    median_s = serializers.FloatField(help_text="Median seconds from claim to decision.")


class AgreementSerializer(serializers.Serializer):
    items = serializers.IntegerField(help_text="Items two or more annotators reviewed.")
    pairs = PairSerializer(many=True)
    alpha = serializers.FloatField(
        allow_null=True, help_text="Krippendorff's alpha (nominal); null if undefined."
    )
    time_on_task = TimeOnTaskSerializer(many=True)


class AgreementViewSet(ApiViewSet):
    """Agreement on the items two or more annotators reviewed: Cohen's κ per pair, Krippendorff's
    α overall (null where undefined); and time on task per annotator."""

    serializer_class = AgreementSerializer
    action_permissions = {"list": "view_review"}
    pagination_class = None
    schema = TableSchema()  # the GET answers one object, not a list

    @extend_schema(parameters=[AgreementQuerySerializer], responses=AgreementSerializer)
    def list(self, request: Request) -> Response:
        round_ = self.query(AgreementQuerySerializer).get("round")
        round_id = round_.pk if round_ else None
        time_on_task = selectors.time_on_task(round_id=round_id)
        body = {
            **selectors.review_agreement(round_id=round_id),
            "time_on_task": time_on_task["annotators"],
        }
        return Response(AgreementSerializer(body).data)
