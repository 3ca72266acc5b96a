"""/api/evaluations/: the evaluation table (JSON or CSV) with its test-time scaling series, and
launching an eval sweep over end-of-thinking hint repeats.

The table is `curation.selectors.evaluation_table`, the same the admin's evaluation page shows;
the sweep is `curation.services.evaluation_sweep_launch`, the same the admin's form calls.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from curation import selectors
from curation.evaluation import scaling_series
from curation.models import Policy, ProblemSet, Round, Split
from curation.services import SWEEP_END_REPEATS, SettingError, evaluation_sweep_launch
from webapp.api.schema import ApiAutoSchema
from webapp.api.serializers import RoundSerializer, ToolConfigSerializer
from webapp.api.views import ERROR_RESPONSES, ApiViewSet, ExportNegotiation

# --- Serializers ------------------------------------------------------------------------------


class EvaluationQuerySerializer(serializers.Serializer):
    policy = serializers.SlugRelatedField(
        slug_field="name",
        queryset=Policy.objects.all(),
        many=True,
        required=False,
        help_text="Only these policies' rounds (repeat the parameter for several).",
    )
    problem_set = serializers.SlugRelatedField(
        slug_field="name",
        queryset=ProblemSet.objects.all(),
        many=True,
        required=False,
        help_text="Only these problem sets' columns (repeat the parameter for several).",
    )
    format = serializers.ChoiceField(
        choices=["json", "csv"], default="json", help_text="csv: the table as a CSV file."
    )


class EvaluationSettingSerializer(serializers.Serializer):
    hinted = serializers.BooleanField()
    tools = serializers.BooleanField()
    samples = serializers.IntegerField(help_text="Samples per problem.")
    temperature = serializers.FloatField()
    max_tool_calls = serializers.IntegerField(help_text="0 with tools off.")
    end_repeats = serializers.IntegerField(help_text="End-of-thinking hints; 0 without hints.")
    top_p = serializers.FloatField()
    max_tokens = serializers.IntegerField()
    hints = serializers.CharField(help_text="Hinted rows: hint names, placement, text digest.")
    sandbox = serializers.CharField(help_text="Tools on: the sandbox's limits and mode.")


class EvaluationCellSerializer(serializers.Serializer):
    correct = serializers.IntegerField()
    n = serializers.IntegerField(help_text="Trajectories (problems x samples).")
    tool_used = serializers.IntegerField(help_text="Trajectories with >= 1 executed call.")
    calls = serializers.IntegerField(help_text="Executed calls, summed.")
    tokens = serializers.IntegerField(help_text="Generated tokens, summed.")
    unscored = serializers.IntegerField(help_text="Not judged; counted as not correct.")
    accuracy = serializers.FloatField(help_text="pass@1 (mean over samples), 0 to 1.")
    ci_low = serializers.FloatField(help_text="Wilson 95 % interval, low end.")
    ci_high = serializers.FloatField(help_text="Wilson 95 % interval, high end.")
    tool_rate = serializers.FloatField()
    mean_calls = serializers.FloatField()
    mean_tokens = serializers.FloatField()


class EvaluationRowSerializer(serializers.Serializer):
    label = serializers.CharField()
    policy = serializers.CharField()
    setting = EvaluationSettingSerializer()
    rounds = serializers.ListField(child=serializers.CharField())
    cells = serializers.DictField(
        child=EvaluationCellSerializer(), help_text="Problem set name -> cell."
    )


class ScalingPointSerializer(EvaluationCellSerializer):
    end_repeats = serializers.IntegerField()


class ScalingSeriesSerializer(serializers.Serializer):
    label = serializers.CharField()
    policy = serializers.CharField()
    column = serializers.CharField(help_text="The problem set.")
    setting = serializers.DictField(help_text="The setting, end_repeats aside.")
    points = ScalingPointSerializer(many=True)


class EvaluationSerializer(serializers.Serializer):
    columns = serializers.ListField(child=serializers.CharField())
    rows = EvaluationRowSerializer(many=True)
    scaling = ScalingSeriesSerializer(
        many=True, help_text="Accuracy against end-of-thinking hints (test-time scaling)."
    )


class EvaluationSweepSerializer(serializers.Serializer):
    name = serializers.SlugField(max_length=150, help_text="Rounds are named <name>-end<k>.")
    policy = serializers.SlugRelatedField(
        slug_field="name", queryset=Policy.objects.all(), required=False, allow_null=True
    )
    problem_sets = serializers.SlugRelatedField(
        slug_field="name", queryset=ProblemSet.objects.all(), many=True, required=False
    )
    end_repeats = serializers.ListField(
        child=serializers.IntegerField(),
        default=list(SWEEP_END_REPEATS),
        help_text="Numbers of end-of-thinking hints, one round each (two or more).",
    )
    samples = serializers.IntegerField(default=1, help_text="Hinted samples per problem.")
    split = serializers.ChoiceField(choices=Split.choices, required=False)
    temperature = serializers.FloatField(required=False)
    top_p = serializers.FloatField(required=False)
    max_tokens = serializers.IntegerField(required=False)
    hint_config = serializers.DictField(
        required=False,
        help_text="HintConfig keys; end_of_thinking and end_repeats are the sweep's.",
    )
    tool_config = ToolConfigSerializer(required=False)


# --- The view ---------------------------------------------------------------------------------


class TableSchema(ApiAutoSchema):
    """The GET at the collection's URL answers one table, not a list of objects."""

    def _is_list_view(self, serializer: Any = None) -> bool:
        return False


class EvaluationViewSet(ApiViewSet):
    """The eval rounds' table: rows per policy and setting, columns per problem set, pass@1
    with Wilson intervals, tool use, calls and tokens; and the test-time scaling series."""

    action_permissions = {"list": "view_round", "sweep": "launch_round"}
    pagination_class = None  # one table, not a list of rows to page through
    schema = TableSchema()

    def get_serializer_class(self) -> type[serializers.Serializer]:
        return EvaluationSweepSerializer if self.action == "sweep" else EvaluationSerializer

    def get_content_negotiator(self):
        if getattr(self, "action", None) == "list":
            return ExportNegotiation()  # `?format=` is the table's format, not a renderer
        return super().get_content_negotiator()

    @extend_schema(
        parameters=[EvaluationQuerySerializer],
        responses={
            (200, "application/json"): EvaluationSerializer,
            (200, "text/csv"): OpenApiTypes.STR,
            **ERROR_RESPONSES,
        },
    )
    def list(self, request: Request) -> Response | HttpResponse:
        """The table over every eval round (or those of `policy`, columns of `problem_set`)."""
        query = self.query(EvaluationQuerySerializer)
        table = selectors.evaluation_table(
            policies=query.get("policy"), problem_sets=query.get("problem_set")
        )
        if query["format"] == "csv":
            response = HttpResponse(table.to_csv(), content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = 'attachment; filename="evaluation.csv"'
            return response
        series = [one.to_dict() for one in scaling_series(table)]
        return Response({**table.to_dict(), "scaling": series})

    @extend_schema(
        request=EvaluationSweepSerializer,
        responses={
            201: RoundSerializer(many=True),
            409: OpenApiResponse(OpenApiTypes.OBJECT, description="A round name is taken."),
            **ERROR_RESPONSES,
        },
    )
    @action(detail=False, methods=["post"], url_path="sweeps")
    def sweep(self, request: Request) -> Response:
        """Create and launch one eval round per end-of-thinking hint count (hinted samples,
        hints only at the end of thinking unless `hint_config` says otherwise). 400 names the
        field when the policy or the problem sets are missing or a setting is out of bounds."""
        form = EvaluationSweepSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data: dict[str, Any] = dict(form.validated_data)
        try:
            rounds = evaluation_sweep_launch(
                name=data.pop("name"),
                policy=data.pop("policy", None),
                problem_sets=data.pop("problem_sets", []),
                end_repeats=data.pop("end_repeats"),
                samples=data.pop("samples"),
                user=request.user,
                **data,
            )
        except SettingError as exc:
            raise serializers.ValidationError({exc.field: [str(exc)]}) from None
        created = Round.objects.filter(pk__in=[r.pk for r in rounds]).select_related("policy")
        body = RoundSerializer(created.prefetch_related("problem_sets").order_by("name"), many=True)
        return Response(body.data, status=201)
