"""The domain of Hint-RFT: problems, policies, rounds, trajectories, reviews, datasets, SFT jobs.

Business logic lives in `curation.services` and `curation.selectors`; models hold data,
constraints and reusable query filters.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.search import SearchVector, SearchVectorField
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from curation.hints import Hint, hint_validate

# Full-text search (the queue's `search` filter): each searchable text has a tsvector column that
# Postgres generates from it, with a GIN index (migration 0006). On the demo's SQLite the column is
# NULL and the queue searches with LIKE instead (curation.selectors).
SEARCH_CONFIG = "english"


class TextSearchVector(SearchVector):
    """`to_tsvector('english', column)` on Postgres; NULL on SQLite, which has no tsvector."""

    def as_sqlite(self, compiler, connection, **extra_context):
        return "NULL", []


def search_vector_field(column: str) -> models.GeneratedField:
    return models.GeneratedField(
        expression=TextSearchVector(column, config=SEARCH_CONFIG),
        output_field=SearchVectorField(null=True),
        db_persist=True,
    )


class SearchDeferringManager(models.Manager):
    """Reads leave the tsvector out (a long trajectory's is tens of kB); searches filter on it."""

    def get_queryset(self) -> models.QuerySet:
        return super().get_queryset().defer("search_vector")


class Domain(models.TextChoices):
    MATH = "math", "Math"
    CODE = "code", "Code"
    SCIENCE = "science", "Science"


class Split(models.TextChoices):
    TRAIN = "train", "Train"
    TEST = "test", "Test (held out)"


class ProblemSet(models.Model):
    name = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    source = models.CharField(max_length=500, blank=True, help_text="Where the problems came from.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Problem(models.Model):
    problem_set = models.ForeignKey(ProblemSet, on_delete=models.CASCADE, related_name="problems")
    external_id = models.CharField(max_length=200, help_text="The id in the source file.")
    domain = models.CharField(max_length=16, choices=Domain.choices)
    split = models.CharField(max_length=8, choices=Split.choices, default=Split.TRAIN)
    prompt = models.TextField()
    answer = models.TextField(blank=True, help_text="Reference answer; a letter for choices.")
    choices = models.JSONField(default=list, blank=True)
    tests = models.JSONField(default=list, blank=True)
    entry_point = models.CharField(max_length=200, blank=True)
    starter_code = models.TextField(blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    search_vector = search_vector_field("prompt")

    objects = SearchDeferringManager()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["problem_set", "external_id"], name="problem_unique_in_set"
            )
        ]

    def __str__(self) -> str:
        return f"{self.problem_set.name}/{self.external_id}"


class Policy(models.Model):
    """A model that generates: the base (e.g. QwQ-32B), START-0, START, or the tiny policy."""

    name = models.CharField(max_length=200, unique=True)
    path = models.CharField(max_length=1000, help_text="Local path or hub id.")
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    metrics = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]
        verbose_name_plural = "policies"

    def __str__(self) -> str:
        return self.name


class HintTemplate(models.Model):
    """A hint phrasing admins can add or rephrase; seeded from `curation.hints`."""

    name = models.SlugField(max_length=100, unique=True)
    domain = models.CharField(max_length=16, choices=Domain.choices)
    text = models.TextField(help_text="Must end by opening a ```python block.")
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["domain", "name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        try:
            hint_validate(Hint(name=self.name, domain=self.domain, text=self.text))
        except ValueError as exc:
            raise ValidationError({"text": str(exc)}) from None


class RoundKind(models.TextChoices):
    SEED = "seed", "Seed (hinted + baseline)"
    RFT = "rft", "RFT (rejection sampling)"
    EVAL = "eval", "Evaluation"


class RunStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING)


class Round(models.Model):
    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=8, choices=RoundKind.choices)
    policy = models.ForeignKey(Policy, on_delete=models.PROTECT, related_name="rounds")
    problem_sets = models.ManyToManyField(ProblemSet, related_name="rounds")
    split = models.CharField(max_length=8, choices=Split.choices, blank=True, default="")
    samples_hinted = models.PositiveIntegerField(default=1)
    samples_plain = models.PositiveIntegerField(default=1, help_text="Baseline samples, no hints.")
    temperature = models.FloatField(default=0.0)
    top_p = models.FloatField(default=1.0)
    max_tokens = models.PositiveIntegerField(default=2048)
    reviews_required = models.PositiveSmallIntegerField(
        default=1,
        help_text="Overlap: how many annotators review each candidate (agreement needs 2 or more).",
    )
    hint_config = models.JSONField(default=dict, blank=True)
    tool_config = models.JSONField(
        default=dict, blank=True, help_text="max_calls, timeout_s, memory_mb, notebook."
    )
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.DRAFT)
    total = models.PositiveIntegerField(default=0, help_text="Trajectories planned.")
    error = models.TextField(blank=True)
    selection = models.JSONField(
        default=dict, blank=True, help_text="The last candidate selection: its rules and funnel."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [("launch_round", "Can launch and cancel rounds")]

    def __str__(self) -> str:
        return self.name

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def notebook(self) -> bool:
        """Whether its cells share one interpreter session, later cells seeing earlier state."""
        return bool((self.tool_config or {}).get("notebook", False))


class ChunkStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class RoundChunk(models.Model):
    """A slice of a round's problems, one Celery task: re-running it skips finished trajectories."""

    round = models.ForeignKey(Round, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    problem_ids = models.JSONField(default=list)
    status = models.CharField(max_length=8, choices=ChunkStatus.choices, default="pending")
    error = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    worker = models.CharField(max_length=255, blank=True, help_text="The worker running it.")
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="Last sign of life of its worker, while running."
    )
    recoveries = models.TextField(
        blank=True, help_text="One line per worker that was lost while running it."
    )

    class Meta:
        ordering = ["round_id", "index"]
        constraints = [
            models.UniqueConstraint(fields=["round", "index"], name="chunk_unique_in_round")
        ]

    def __str__(self) -> str:
        return f"{self.round.name} chunk {self.index}"


class ReviewStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    SKIPPED = "skipped", "Skipped"
    # Overlap: the k reviews a round asked for disagree; a curator's adjudication decides.
    DISPUTED = "disputed", "Disputed"


class Candidate(models.TextChoices):
    NONE = "", "Not a candidate"
    SEED = "d_seed", "D_seed candidate"
    START = "d_start", "D_START candidate"


class TrajectoryQuerySet(models.QuerySet):
    def candidates(self, kind: str | None = None) -> TrajectoryQuerySet:
        qs = self.exclude(candidate=Candidate.NONE)
        return qs.filter(candidate=kind) if kind else qs

    def pending_review(self) -> TrajectoryQuerySet:
        return self.candidates().filter(review_status=ReviewStatus.PENDING)

    def unclaimed(self, now=None) -> TrajectoryQuerySet:
        now = now or timezone.now()
        return self.filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))

    def approved(self) -> TrajectoryQuerySet:
        return self.filter(review_status=ReviewStatus.APPROVED)


class Trajectory(models.Model):
    round = models.ForeignKey(Round, on_delete=models.CASCADE, related_name="trajectories")
    problem = models.ForeignKey(Problem, on_delete=models.PROTECT, related_name="trajectories")
    hinted = models.BooleanField()
    sample_index = models.PositiveIntegerField()

    text = models.TextField(help_text="The completion: the one truth for training.")
    original_text = models.TextField(help_text="As generated, before any human edit.")
    hints = models.JSONField(default=list, blank=True, help_text="Hint texts the rollout inserted.")
    output_sources = models.JSONField(
        default=list,
        blank=True,
        help_text="Digests (curation.checks.output_sources) of outputs that are true besides the "
        "generated text's: those a re-run printed and stale ones an annotator kept.",
    )
    finish_reason = models.CharField(max_length=32)
    error = models.TextField(blank=True)
    num_tokens = models.PositiveIntegerField(default=0)
    num_tool_calls = models.PositiveIntegerField(default=0)
    timings = models.JSONField(default=dict, blank=True)

    is_correct = models.BooleanField(null=True)
    extracted_answer = models.TextField(blank=True)
    score_details = models.JSONField(default=dict, blank=True)
    flag_count = models.PositiveIntegerField(default=0, help_text="Warnings and errors.")

    candidate = models.CharField(max_length=8, choices=Candidate.choices, blank=True, default="")
    review_status = models.CharField(
        max_length=8, choices=ReviewStatus.choices, default=ReviewStatus.PENDING
    )
    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="claimed_trajectories",
    )
    claimed_until = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(
        null=True, blank=True, help_text="When the holder's lease began (time on task)."
    )
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="reviewed_trajectories",
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_reason = models.TextField(blank=True)

    version = models.PositiveIntegerField(default=1, help_text="Optimistic lock: +1 per save.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    search_vector = search_vector_field("text")

    objects = SearchDeferringManager.from_queryset(TrajectoryQuerySet)()

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "trajectories"
        permissions = [
            ("review_trajectory", "Can claim, approve and reject trajectories"),
            ("take_over_claim", "Can take over another annotator's claim"),
            ("bulk_review_trajectory", "Can approve, reject, reassign and re-score in bulk"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["round", "problem", "hinted", "sample_index"],
                name="trajectory_unique_sample",
            ),
        ]
        indexes = [
            # The review queue: a round's candidates by status, and the flag filter.
            models.Index(fields=["round", "candidate", "review_status"], name="traj_queue"),
            models.Index(fields=["candidate", "review_status", "id"], name="traj_queue_all"),
            models.Index(fields=["round", "review_status", "flag_count"], name="traj_flags"),
            # Queue sorts: most flags first; shortest / longest (ties broken by id).
            models.Index(
                F("review_status"), F("flag_count").desc(), F("id"), name="traj_status_flags"
            ),
            models.Index(fields=["review_status", "num_tokens", "id"], name="traj_status_length"),
        ]

    def __str__(self) -> str:
        kind = "hinted" if self.hinted else "plain"
        return f"{self.round.name}: {self.problem.external_id} {kind} #{self.sample_index}"


class Flag(models.Model):
    """One finding of `curation.checks`, pointing at a character span of the trajectory text."""

    trajectory = models.ForeignKey(Trajectory, on_delete=models.CASCADE, related_name="flags")
    kind = models.CharField(max_length=32)
    level = models.CharField(max_length=8, default="warning", help_text="info, warning or error")
    message = models.TextField()
    segment_index = models.IntegerField(null=True)
    start = models.PositiveIntegerField()
    end = models.PositiveIntegerField()

    class Meta:
        ordering = ["trajectory_id", "start"]
        indexes = [models.Index(fields=["kind", "trajectory"], name="flag_kind")]

    def __str__(self) -> str:
        return f"{self.kind} @{self.start}-{self.end}"


class QueueCount(models.Model):
    """Trajectories per cell of the review queue's filters, kept exact by Postgres triggers on
    trajectories, flags and problems (migration 0006) whatever writes them (services, bulk
    updates, raw SQL). `flag_kind` "" counts every trajectory of the cell; a kind counts those
    with at least one flag of that kind. The queue's counts per filter value read these few
    hundred rows instead of grouping a million trajectories (curation.selectors.queue_facets).
    Empty on SQLite, where the counts are computed live."""

    round_id = models.BigIntegerField()
    candidate = models.CharField(max_length=8, blank=True)
    domain = models.CharField(max_length=16)
    review_status = models.CharField(max_length=8)
    correct = models.CharField(max_length=8, help_text="yes, no or unknown")
    flag_kind = models.CharField(max_length=32, blank=True)
    n = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["round_id", "candidate", "domain", "review_status", "correct", "flag_kind"],
                name="queue_count_cell",
            )
        ]

    def __str__(self) -> str:
        cell = f"{self.candidate} {self.domain} {self.review_status} {self.correct}"
        return f"round {self.round_id} {cell} {self.flag_kind}: {self.n}"


class Revision(models.Model):
    """Every human edit of a trajectory: nothing is edited without one."""

    trajectory = models.ForeignKey(Trajectory, on_delete=models.CASCADE, related_name="revisions")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    created_at = models.DateTimeField(auto_now_add=True)
    action = models.CharField(max_length=32)
    reason = models.TextField(blank=True)
    before_text = models.TextField()
    after_text = models.TextField()
    base_version = models.PositiveIntegerField()

    class Meta:
        ordering = ["trajectory_id", "id"]

    def __str__(self) -> str:
        return f"{self.action} by {self.author} on #{self.trajectory_id}"


class Review(models.Model):
    """One annotator's decision on one trajectory, written by `review.trajectory_decide`.

    A round that asks for k reviews (overlap) settles a trajectory when k annotators agree; if
    they disagree it is disputed until a curator's review (`adjudication`) decides, for good.
    Reopening a trajectory supersedes its reviews. `started_at` is when the reviewer's lease
    began, so `decided_at - started_at` is their time on task.
    """

    trajectory = models.ForeignKey(Trajectory, on_delete=models.CASCADE, related_name="reviews")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reviews"
    )
    decision = models.CharField(
        max_length=8,
        choices=[(ReviewStatus.APPROVED, "Approve"), (ReviewStatus.REJECTED, "Reject")],
    )
    reason = models.TextField(blank=True)
    version = models.PositiveIntegerField(help_text="The trajectory's version it decided on.")
    adjudication = models.BooleanField(default=False)
    started_at = models.DateTimeField(null=True, blank=True)
    decided_at = models.DateTimeField(auto_now_add=True)
    superseded = models.BooleanField(default=False, help_text="The trajectory was reopened.")

    class Meta:
        ordering = ["trajectory_id", "id"]
        indexes = [models.Index(fields=["annotator", "decided_at"], name="review_annotator_time")]
        permissions = [("adjudicate_trajectory", "Can settle disputed trajectories")]

    def __str__(self) -> str:
        return f"{self.annotator} {self.decision} #{self.trajectory_id}"


class Assignment(models.Model):
    """A batch a curator gave an annotator: the queue's items under `filters` (a round, a
    status, flags... as the workbench's queue filters), up to `quota` decisions. The queue
    serves an annotator's open assignments first, oldest first. Made by
    `review.assignment_create`."""

    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments"
    )
    filters = models.JSONField(default=dict, blank=True)
    quota = models.PositiveIntegerField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="assignments_made"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.quota} for {self.annotator}"


class Comment(models.Model):
    """A note on a trajectory, or on one of its segments (a cell) or a span of its text, for the
    next reviewer and the curator. Markdown, rendered sanitised. Written by
    `curation.review.trajectory_comment`; it changes neither the text nor the version."""

    trajectory = models.ForeignKey(Trajectory, on_delete=models.CASCADE, related_name="comments")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    created_at = models.DateTimeField(auto_now_add=True)
    body = models.TextField()
    version = models.PositiveIntegerField(help_text="The trajectory's version it was written on.")
    segment_index = models.PositiveIntegerField(null=True, blank=True)
    start = models.PositiveIntegerField(null=True, blank=True)
    end = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["trajectory_id", "id"]

    def __str__(self) -> str:
        return f"comment by {self.author} on #{self.trajectory_id}"


class Suggestion(models.Model):
    """A pre-annotation by a script or an LLM judge: a decision it proposes for one version of a
    trajectory. The human sees it in the workbench; it never approves or rejects anything (the
    review status stays as it was). Written by `curation.review.trajectory_suggest`."""

    trajectory = models.ForeignKey(Trajectory, on_delete=models.CASCADE, related_name="suggestions")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    created_at = models.DateTimeField(auto_now_add=True)
    decision = models.CharField(
        max_length=8,
        choices=[(ReviewStatus.APPROVED, "Approve"), (ReviewStatus.REJECTED, "Reject")],
    )
    reason = models.TextField(blank=True)
    source = models.CharField(
        max_length=200, blank=True, help_text="Who or what judged, e.g. a judge model's name."
    )
    version = models.PositiveIntegerField(help_text="The trajectory's version it judged.")

    class Meta:
        ordering = ["trajectory_id", "id"]

    def __str__(self) -> str:
        return f"suggest {self.decision} on #{self.trajectory_id} by {self.author}"


class DatasetKind(models.TextChoices):
    SEED = "d_seed", "D_seed"
    START = "d_start", "D_START"
    CUSTOM = "custom", "Custom"


class Dataset(models.Model):
    name = models.SlugField(max_length=100, unique=True)
    kind = models.CharField(max_length=8, choices=DatasetKind.choices)
    description = models.TextField(blank=True)
    guidelines = models.TextField(
        blank=True,
        help_text="Markdown for annotators, shown in the workbench (g) on the trajectories this "
        "dataset may take; rendered sanitised (no HTML, scripts or javascript: links).",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class DatasetVersion(models.Model):
    """A frozen snapshot: its items hold the exact training texts; later edits never change it."""

    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    content_hash = models.CharField(max_length=64)
    rules = models.JSONField(default=dict, blank=True, help_text="Selection rule parameters.")
    funnel = models.JSONField(default=list, blank=True, help_text="Counts after each step.")
    size = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["dataset_id", "number"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "number"], name="version_unique_number")
        ]

    def __str__(self) -> str:
        return f"{self.dataset.name} v{self.number}"


class DatasetItem(models.Model):
    version = models.ForeignKey(DatasetVersion, on_delete=models.CASCADE, related_name="items")
    trajectory = models.ForeignKey(Trajectory, on_delete=models.PROTECT, related_name="+")
    problem = models.ForeignKey(Problem, on_delete=models.PROTECT, related_name="+")
    prompt = models.TextField()
    text = models.TextField()
    mask_spans = models.JSONField(default=list)
    is_correct = models.BooleanField(null=True)

    class Meta:
        ordering = ["version_id", "id"]
        constraints = [
            models.UniqueConstraint(fields=["version", "trajectory"], name="item_unique_member")
        ]

    def __str__(self) -> str:
        return f"{self.version} item {self.trajectory_id}"


class SFTJob(models.Model):
    dataset_version = models.ForeignKey(DatasetVersion, on_delete=models.PROTECT, related_name="+")
    base_policy = models.ForeignKey(Policy, on_delete=models.PROTECT, related_name="sft_jobs")
    output_name = models.CharField(max_length=200, help_text="Name of the policy it registers.")
    config = models.JSONField(default=dict, blank=True, help_text="Hyperparameter overrides.")
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.DRAFT)
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    metrics = models.JSONField(default=dict, blank=True, help_text="Latest loss, lr, tokens/s...")
    history = models.JSONField(default=list, blank=True, help_text="Loss curve points.")
    log = models.TextField(blank=True)
    error = models.TextField(blank=True)
    worker = models.CharField(max_length=200, blank=True, help_text="The worker running it.")
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="Last sign of life of its worker, while running."
    )
    command = models.TextField(blank=True, help_text="The command line its worker launched.")
    output_policy = models.OneToOneField(
        Policy, null=True, blank=True, on_delete=models.SET_NULL, related_name="made_by"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "SFT job"

    def __str__(self) -> str:
        return f"SFT → {self.output_name} ({self.status})"


class AuditAction(models.TextChoices):
    DATASET_FROZEN = "dataset_frozen", "Dataset version frozen"
    ROUND_LAUNCHED = "round_launched", "Round launched"
    ROUND_CANCELLED = "round_cancelled", "Round cancelled"
    ROUND_RERUN_FAILED = "round_rerun_failed", "Round's unfinished chunks re-run"
    POLICY_REGISTERED = "policy_registered", "Policy registered"
    HINT_EDITED = "hint_edited", "Hint template edited"
    ROLE_CHANGED = "role_changed", "Role changed"
    EXPORT_TOKEN_CREATED = "export_token_created", "API token created"
    SFT_JOB_LAUNCHED = "sft_job_launched", "SFT job launched"
    SFT_JOB_CANCELLED = "sft_job_cancelled", "SFT job cancelled"


class AuditEvent(models.Model):
    """One curator or admin action: who, when, on which object, and what it changed.

    The target is named by its model label, primary key and text at the time, not by a foreign
    key, so the event outlives the object. Written only by `curation.audit.audit_record`.
    """

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="audit_events",
        help_text="Empty for scripts.",
    )
    created_at = models.DateTimeField(default=timezone.now)
    action = models.CharField(max_length=32, choices=AuditAction.choices)
    target_type = models.CharField(max_length=100, help_text="The model, e.g. curation.round.")
    target_id = models.CharField(max_length=64)
    target_repr = models.CharField(max_length=200)
    before = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    after = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["created_at"], name="audit_created"),
            models.Index(fields=["action", "created_at"], name="audit_action_created"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.target_repr} by {self.actor or 'a script'}"
