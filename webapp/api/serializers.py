"""Serializers of the REST API: reads render model rows; writes validate, then call a service."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from curation.bulk import MAX_SELECTION, BulkAction
from curation.exporting import FORMATS as EXPORT_FORMATS
from curation.models import (
    AuditAction,
    AuditEvent,
    Candidate,
    Comment,
    Dataset,
    DatasetVersion,
    Domain,
    Flag,
    Policy,
    Problem,
    ProblemSet,
    ReviewStatus,
    Round,
    SFTJob,
    Split,
    Suggestion,
    Trajectory,
)
from curation.problems import FORMATS
from curation.review import trajectory_suggestion
from curation.services import (
    RUN_CODE,
    SettingError,
    round_create,
    round_settings,
    sft_job_config_validate,
)
from curation.trajectory import parse, segment_spans
from webapp.api.schema import sft_config_schema

# --- Problems ---------------------------------------------------------------------------------


class ProblemSetSerializer(serializers.ModelSerializer):
    problem_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = ProblemSet
        fields = ["name", "description", "source", "created_at", "problem_count"]


class ProblemSerializer(serializers.ModelSerializer):
    problem_set = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = Problem
        fields = [
            "id",
            "problem_set",
            "external_id",
            "domain",
            "split",
            "prompt",
            "answer",
            "choices",
            "tests",
            "entry_point",
            "starter_code",
            "metadata",
        ]


class ProblemFilterSerializer(serializers.Serializer):
    problem_set = serializers.SlugField(required=False, help_text="Problem set name.")
    domain = serializers.ChoiceField(choices=Domain.choices, required=False)
    split = serializers.ChoiceField(choices=Split.choices, required=False)


class ProblemSetImportSerializer(serializers.Serializer):
    file = serializers.FileField(
        help_text="JSONL (one problem per line), or a Parquet, Arrow or CSV file "
        "(Hugging Face `datasets` layout)."
    )
    name = serializers.SlugField(max_length=100, help_text="The problem set to create or update.")
    split = serializers.ChoiceField(choices=Split.choices, default=Split.TRAIN)
    domain = serializers.ChoiceField(
        choices=Domain.choices, required=False, help_text="Domain of records that omit it."
    )
    id_field = serializers.CharField(
        required=False,
        max_length=100,
        help_text="The field that identifies a record, or `line` to number them.",
    )
    format = serializers.ChoiceField(
        choices=[f.name for f in FORMATS],
        required=False,
        help_text="The file's published format (default: the one its columns match).",
    )


class ImportErrorSerializer(serializers.Serializer):
    line = serializers.IntegerField()
    error = serializers.CharField()


class ImportReportSerializer(serializers.Serializer):
    problem_set = serializers.CharField()
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    errors = ImportErrorSerializer(many=True)
    format = serializers.CharField(help_text="The published format the file was read in.")
    unknown_columns = serializers.ListField(
        child=serializers.CharField(),
        help_text="Columns the format does not know: kept in the problems' metadata as they are.",
    )


# --- Policies ---------------------------------------------------------------------------------


class PolicySerializer(serializers.ModelSerializer):
    parent = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)
    made_by = serializers.SerializerMethodField(help_text="The SFT job that trained it, if any.")
    ancestors = serializers.SerializerMethodField(help_text="Parent, grandparent... by name.")

    class Meta:
        model = Policy
        fields = ["id", "name", "path", "parent", "ancestors", "made_by", "metrics", "created_at"]

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_made_by(self, policy: Policy) -> int | None:
        job = getattr(policy, "made_by", None)
        return job.pk if job else None

    def get_ancestors(self, policy: Policy) -> list[str]:
        names, seen, parent = [], {policy.pk}, policy.parent
        while parent is not None and parent.pk not in seen:  # a cycle ends the walk
            names.append(parent.name)
            seen.add(parent.pk)
            parent = parent.parent
        return names


class PolicyRegisterSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    path = serializers.CharField(max_length=1000, help_text="Local path or hub id.")
    parent = serializers.SlugRelatedField(
        slug_field="name", queryset=Policy.objects.all(), required=False, allow_null=True
    )


# --- Rounds -----------------------------------------------------------------------------------


class ToolConfigSerializer(serializers.Serializer):
    max_calls = serializers.IntegerField(min_value=0, max_value=100, required=False)
    timeout_s = serializers.FloatField(min_value=0.1, max_value=600, required=False)
    memory_mb = serializers.IntegerField(min_value=16, max_value=65536, required=False)
    notebook = serializers.BooleanField(
        required=False, help_text="One interpreter session per trajectory, state kept across cells."
    )
    run_code = serializers.ChoiceField(
        choices=RUN_CODE,
        required=False,
        help_text="Which samples run their code: all (default), hinted (baseline samples run "
        "none, the paper's greedy base), none (tools off: the QwQ-RFT control).",
    )

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if isinstance(data, dict) and (unknown := sorted(set(data) - set(self.fields))):
            raise serializers.ValidationError(
                f"unknown keys {unknown}; allowed: {sorted(self.fields)}"
            )
        return super().to_internal_value(data)


class RoundSerializer(serializers.ModelSerializer):
    policy = serializers.SlugRelatedField(slug_field="name", queryset=Policy.objects.all())
    problem_sets = serializers.SlugRelatedField(
        slug_field="name", many=True, queryset=ProblemSet.objects.all()
    )
    # Omitted sampling settings take the kind's defaults (curation.services.ROUND_DEFAULTS);
    # bounds are checked once, by curation.services.round_settings.
    temperature = serializers.FloatField(required=False)
    top_p = serializers.FloatField(required=False)
    max_tokens = serializers.IntegerField(required=False)
    samples_hinted = serializers.IntegerField(required=False)
    samples_plain = serializers.IntegerField(required=False)
    hint_config = serializers.JSONField(
        required=False,
        help_text="HintConfig keys: hints, conjunctions, conjunction_probability, max_hints, "
        "end_of_thinking, end_repeats, max_tool_calls. Omitted keys take their defaults.",
    )
    tool_config = ToolConfigSerializer(required=False)
    created_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = Round
        fields = [
            "id",
            "name",
            "kind",
            "policy",
            "problem_sets",
            "split",
            "samples_hinted",
            "samples_plain",
            "temperature",
            "top_p",
            "max_tokens",
            "reviews_required",
            "hint_config",
            "tool_config",
            "status",
            "total",
            "error",
            "selection",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = [
            "status",
            "total",
            "error",
            "selection",
            "created_at",
            "started_at",
            "finished_at",
        ]

    def validate_problem_sets(self, value: list[ProblemSet]) -> list[ProblemSet]:
        if not value:
            raise serializers.ValidationError("name at least one problem set")
        return value

    def validate_hint_config(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise serializers.ValidationError("expected an object of hint settings")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        identity = {"name", "kind", "policy", "problem_sets"}
        options = {k: v for k, v in attrs.items() if k not in identity}
        try:
            settings = round_settings(kind=attrs["kind"], **options)
        except SettingError as exc:
            raise serializers.ValidationError({exc.field: str(exc)}) from None
        return {**attrs, **settings}

    def create(self, validated_data: dict[str, Any]) -> Round:
        try:
            return round_create(**validated_data)
        except ValueError as exc:
            raise serializers.ValidationError({"non_field_errors": [str(exc)]}) from None


class ChunkCountsSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    pending = serializers.IntegerField()
    running = serializers.IntegerField()
    done = serializers.IntegerField()
    failed = serializers.IntegerField()


class RoundProgressSerializer(serializers.Serializer):
    status = serializers.CharField()
    total = serializers.IntegerField(help_text="Trajectories planned.")
    done = serializers.IntegerField(help_text="Trajectories stored.")
    fraction = serializers.FloatField()
    errors = serializers.IntegerField(help_text="Stored trajectories that ended in an error.")
    tokens = serializers.IntegerField()
    elapsed_s = serializers.FloatField(allow_null=True)
    tokens_per_s = serializers.FloatField(allow_null=True)
    chunks = ChunkCountsSerializer()
    chunk_errors = serializers.ListField(child=serializers.CharField())
    recoveries = serializers.ListField(
        child=serializers.CharField(),
        help_text="One line per chunk whose worker was lost and that went back on the queue.",
    )


class SelectionSerializer(serializers.Serializer):
    rule = serializers.CharField()
    params = serializers.DictField()
    funnel = serializers.ListField(child=serializers.DictField())
    chosen = serializers.ListField(child=serializers.IntegerField())


class RerunSerializer(serializers.Serializer):
    chunks = serializers.IntegerField(help_text="Chunks enqueued again.")


# --- Trajectories -----------------------------------------------------------------------------


# The API's words for correctness, and the queue's (curation.selectors.CORRECTNESS) they mean.
CORRECTNESS_PARAM = {"true": "yes", "false": "no", "null": "unknown"}


class TrajectoryFilterSerializer(serializers.Serializer):
    round = serializers.IntegerField(required=False, min_value=1)
    problem = serializers.IntegerField(required=False, min_value=1)
    problem_set = serializers.SlugField(required=False)
    hinted = serializers.BooleanField(required=False, allow_null=True, default=None)
    is_correct = serializers.ChoiceField(
        choices=["true", "false", "null"], required=False, help_text="`null`: not scored."
    )
    candidate = serializers.ChoiceField(choices=[c for c in Candidate.values if c], required=False)
    review_status = serializers.ChoiceField(choices=ReviewStatus.choices, required=False)
    finish_reason = serializers.CharField(required=False, max_length=32)
    flag = serializers.CharField(
        required=False, max_length=32, help_text="Has a flag of this kind."
    )
    min_flags = serializers.IntegerField(required=False, min_value=0)
    max_flags = serializers.IntegerField(required=False, min_value=0)
    suggested = serializers.BooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="true: a script or judge suggested a decision for its current version; "
        "false: none did (the items left to pre-annotate).",
    )
    search = serializers.CharField(
        required=False,
        max_length=200,
        help_text='Words of the text or the problem\'s prompt: all of them, "a phrase", '
        "-excluded, or (Postgres full-text search, stemmed English).",
    )


class TrajectorySerializer(serializers.ModelSerializer):
    class Meta:
        model = Trajectory
        fields = [
            "id",
            "round",
            "problem",
            "hinted",
            "sample_index",
            "finish_reason",
            "num_tokens",
            "num_tool_calls",
            "is_correct",
            "flag_count",
            "candidate",
            "review_status",
            "version",
            "created_at",
            "updated_at",
        ]


class BulkActionSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=[a.value for a in BulkAction])
    ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1),
        allow_empty=False,
        max_length=MAX_SELECTION,
        help_text="The trajectories to act on.",
    )
    reason = serializers.CharField(
        required=False, allow_blank=True, max_length=1000, help_text="Required to reject."
    )
    assignee = serializers.SlugRelatedField(
        slug_field="username",
        queryset=get_user_model().objects.all(),
        required=False,
        allow_null=True,
        help_text="reassign: the annotator who gets the leases (none: they are released).",
    )


class BulkResultSerializer(serializers.Serializer):
    action = serializers.CharField()
    done = serializers.ListField(child=serializers.IntegerField())
    skipped = serializers.IntegerField(help_text="held + refused + missing")
    held = serializers.ListField(
        child=serializers.IntegerField(), help_text="Skipped: another annotator holds them."
    )
    refused = serializers.DictField(
        child=serializers.CharField(), help_text="Skipped: id -> why a single action is refused."
    )
    missing = serializers.ListField(child=serializers.IntegerField())


class DecisionSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=ReviewStatus.choices, help_text="pending: reopen.")
    reason = serializers.CharField(
        required=False, allow_blank=True, max_length=1000, help_text="Required to reject."
    )
    base_version = serializers.IntegerField(
        min_value=1, help_text="The version the decision is about: a newer one is a 409."
    )


class EditSerializer(serializers.Serializer):
    segment_index = serializers.IntegerField(min_value=0, help_text="The segment to replace.")
    text = serializers.CharField(
        trim_whitespace=False,
        allow_blank=True,
        help_text="The segment's whole new text: a code cell's body (without the fences), or "
        "prose; a hint's new wording.",
    )
    rerun = serializers.BooleanField(
        default=False, help_text="A code cell only: run it and replace its output block."
    )
    base_version = serializers.IntegerField(
        min_value=1, help_text="The version the edit started from: a newer one is a 409."
    )


class CellRunSerializer(serializers.Serializer):
    segment_index = serializers.IntegerField(min_value=0, help_text="The code cell to run.")
    following = serializers.BooleanField(
        default=False, help_text="Also every later cell that has an output."
    )
    base_version = serializers.IntegerField(min_value=1)


class RenameSerializer(serializers.Serializer):
    old = serializers.CharField(max_length=200)
    new = serializers.CharField(max_length=200)
    in_text = serializers.BooleanField(
        default=False, help_text="Also in strings and comments of the code."
    )
    base_version = serializers.IntegerField(min_value=1)


class CommentSerializer(serializers.ModelSerializer):
    author = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Comment
        fields = ["id", "author", "created_at", "body", "version", "segment_index", "start", "end"]


class CommentCreateSerializer(serializers.Serializer):
    body = serializers.CharField(max_length=10_000, help_text="Markdown, rendered sanitised.")
    segment_index = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, help_text="On this segment (a cell)."
    )
    start = serializers.IntegerField(required=False, allow_null=True, min_value=0)
    end = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, help_text="With `start`: a span of the text."
    )
    base_version = serializers.IntegerField(
        min_value=1, help_text="The version the comment is about: a newer one is a 409."
    )


class SuggestionSerializer(serializers.ModelSerializer):
    author = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Suggestion
        fields = ["id", "author", "created_at", "decision", "reason", "source", "version"]


class SuggestSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(
        choices=[ReviewStatus.APPROVED, ReviewStatus.REJECTED],
        help_text="What the script or judge proposes; the human decides.",
    )
    reason = serializers.CharField(required=False, allow_blank=True, max_length=10_000)
    source = serializers.CharField(
        required=False, allow_blank=True, max_length=200, help_text="E.g. the judge model."
    )
    base_version = serializers.IntegerField(
        min_value=1, help_text="The version that was judged: a newer one is a 409."
    )


class FlagSerializer(serializers.ModelSerializer):
    class Meta:
        model = Flag
        fields = ["kind", "message", "segment_index", "start", "end"]


class SegmentSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=["think", "hint", "code", "output", "answer"])
    start = serializers.IntegerField()
    end = serializers.IntegerField()
    text = serializers.CharField(trim_whitespace=False)


class ScoreSerializer(serializers.Serializer):
    correct = serializers.BooleanField(allow_null=True)
    answer = serializers.CharField(allow_blank=True)
    details = serializers.DictField()


class TrajectoryDetailSerializer(TrajectorySerializer):
    segments = serializers.SerializerMethodField()
    score = serializers.SerializerMethodField()
    flags = FlagSerializer(many=True, read_only=True)
    suggestion = serializers.SerializerMethodField(
        help_text="The latest pre-annotation (its `version` may be older than the trajectory's)."
    )
    comments = CommentSerializer(many=True, read_only=True)

    class Meta(TrajectorySerializer.Meta):
        fields = [
            *TrajectorySerializer.Meta.fields,
            "text",
            "original_text",
            "hints",
            "error",
            "timings",
            "review_reason",
            "reviewed_at",
            "segments",
            "score",
            "flags",
            "suggestion",
            "comments",
        ]

    @extend_schema_field(SegmentSerializer(many=True))
    def get_segments(self, trajectory: Trajectory) -> list[dict[str, Any]]:
        segments = parse(trajectory.text, hints=trajectory.hints)
        return [
            {"index": i, "kind": s.kind, "start": start, "end": end, "text": s.text}
            for i, (s, (start, end)) in enumerate(
                zip(segments, segment_spans(segments), strict=True)
            )
        ]

    @extend_schema_field(SuggestionSerializer(allow_null=True))
    def get_suggestion(self, trajectory: Trajectory) -> dict[str, Any] | None:
        suggestion = trajectory_suggestion(trajectory=trajectory)
        return SuggestionSerializer(suggestion).data if suggestion else None

    @extend_schema_field(ScoreSerializer)
    def get_score(self, trajectory: Trajectory) -> dict[str, Any]:
        return {
            "correct": trajectory.is_correct,
            "answer": trajectory.extracted_answer,
            "details": trajectory.score_details,
        }


# --- Datasets ---------------------------------------------------------------------------------


class DatasetSerializer(serializers.ModelSerializer):
    latest_version = serializers.IntegerField(read_only=True, allow_null=True)

    class Meta:
        model = Dataset
        fields = ["name", "kind", "description", "guidelines", "created_at", "latest_version"]


class DatasetVersionSerializer(serializers.ModelSerializer):
    dataset = serializers.SlugRelatedField(slug_field="name", read_only=True)
    created_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = DatasetVersion
        fields = [
            "dataset",
            "number",
            "content_hash",
            "size",
            "rules",
            "funnel",
            "created_by",
            "created_at",
        ]


class FreezeSerializer(serializers.Serializer):
    rounds = serializers.PrimaryKeyRelatedField(
        many=True,
        queryset=Round.objects.all(),
        required=False,
        help_text="Only approved candidates of these rounds, of the dataset's kind (seed rounds "
        "for D_seed, RFT rounds for D_START). Default: the latest such round with approved "
        "candidates.",
    )


class DiffSerializer(serializers.Serializer):
    old = serializers.IntegerField()
    new = serializers.IntegerField()
    added = serializers.ListField(child=serializers.IntegerField())
    removed = serializers.ListField(child=serializers.IntegerField())
    changed = serializers.ListField(child=serializers.IntegerField())


class ExportQuerySerializer(serializers.Serializer):
    format = serializers.ChoiceField(choices=EXPORT_FORMATS, default="messages")


class DiffQuerySerializer(serializers.Serializer):
    against = serializers.IntegerField(
        min_value=1, help_text="The other version's number (usually the previous one)."
    )


# --- SFT jobs ---------------------------------------------------------------------------------


@extend_schema_field(sft_config_schema())
class SFTConfigField(serializers.DictField):
    """Hyperparameter overrides: the keys of training.config, checked as the runner reads them."""


class SFTJobSerializer(serializers.ModelSerializer):
    dataset = serializers.CharField(
        write_only=True, help_text="Dataset name (with `version`, the frozen version to train on)."
    )
    version = serializers.IntegerField(write_only=True, min_value=1)
    dataset_version = serializers.StringRelatedField(read_only=True)
    base_policy = serializers.SlugRelatedField(slug_field="name", queryset=Policy.objects.all())
    output_policy = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)
    created_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    config = SFTConfigField(required=False, default=dict)
    progress = serializers.SerializerMethodField()

    class Meta:
        model = SFTJob
        fields = [
            "id",
            "dataset",
            "version",
            "dataset_version",
            "base_policy",
            "output_name",
            "config",
            "status",
            "step",
            "total_steps",
            "progress",
            "metrics",
            "error",
            "output_policy",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = [
            "status",
            "step",
            "total_steps",
            "metrics",
            "error",
            "created_at",
            "started_at",
            "finished_at",
        ]

    def validate_config(self, value: dict[str, Any]) -> dict[str, Any]:
        try:
            return sft_job_config_validate(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    @extend_schema_field(serializers.FloatField(allow_null=True))
    def get_progress(self, job: SFTJob) -> float | None:
        return job.step / job.total_steps if job.total_steps else None

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        name, number = attrs.pop("dataset"), attrs.pop("version")
        version = (
            DatasetVersion.objects.filter(dataset__name=name, number=number)
            .select_related("dataset")
            .first()
        )
        if version is None:
            raise serializers.ValidationError({"version": f"dataset {name!r} has no v{number}"})
        attrs["dataset_version"] = version
        return attrs


class SFTMetricsSerializer(serializers.Serializer):
    status = serializers.CharField()
    step = serializers.IntegerField()
    total_steps = serializers.IntegerField()
    metrics = serializers.DictField()
    history = serializers.ListField(child=serializers.DictField())


# --- Audit log ----------------------------------------------------------------------------------


class AuditEventSerializer(serializers.ModelSerializer):
    actor = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True, help_text="Null for scripts."
    )

    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "created_at",
            "actor",
            "action",
            "target_type",
            "target_id",
            "target_repr",
            "before",
            "after",
        ]


class AuditEventFilterSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=AuditAction.choices, required=False)
    since = serializers.DateTimeField(
        required=False, help_text="Only events at or after this time (ISO 8601)."
    )
