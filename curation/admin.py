from django.contrib import admin

from curation import models


@admin.register(models.ProblemSet)
class ProblemSetAdmin(admin.ModelAdmin):
    list_display = ["name", "source", "created_at"]
    search_fields = ["name", "description", "source"]


@admin.register(models.Problem)
class ProblemAdmin(admin.ModelAdmin):
    list_display = ["external_id", "problem_set", "domain", "split"]
    list_filter = ["problem_set", "domain", "split"]
    search_fields = ["external_id", "prompt"]
    list_select_related = ["problem_set"]


@admin.register(models.Policy)
class PolicyAdmin(admin.ModelAdmin):
    list_display = ["name", "path", "parent", "created_at"]
    list_filter = ["created_at"]
    search_fields = ["name", "path"]
    raw_id_fields = ["parent"]


@admin.register(models.HintTemplate)
class HintTemplateAdmin(admin.ModelAdmin):
    list_display = ["name", "domain", "enabled"]
    list_filter = ["domain", "enabled"]
    search_fields = ["name", "text"]


@admin.register(models.Round)
class RoundAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "policy", "status", "total", "created_at"]
    list_filter = ["kind", "status", "policy"]
    search_fields = ["name"]
    filter_horizontal = ["problem_sets"]


@admin.register(models.Trajectory)
class TrajectoryAdmin(admin.ModelAdmin):
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
    ]
    list_filter = ["round", "hinted", "is_correct", "candidate", "review_status", "finish_reason"]
    search_fields = ["problem__external_id", "text"]
    list_select_related = ["round", "problem"]
    raw_id_fields = ["round", "problem", "claimed_by", "reviewed_by"]
    readonly_fields = ["original_text", "version"]


@admin.register(models.Flag)
class FlagAdmin(admin.ModelAdmin):
    list_display = ["trajectory", "kind", "message", "start", "end"]
    list_filter = ["kind"]
    search_fields = ["message"]
    raw_id_fields = ["trajectory"]


@admin.register(models.Revision)
class RevisionAdmin(admin.ModelAdmin):
    list_display = ["trajectory", "action", "author", "created_at"]
    list_filter = ["action", "author"]
    search_fields = ["reason"]
    raw_id_fields = ["trajectory"]


@admin.register(models.Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "created_at"]
    list_filter = ["kind"]
    search_fields = ["name", "description"]


@admin.register(models.DatasetVersion)
class DatasetVersionAdmin(admin.ModelAdmin):
    list_display = ["dataset", "number", "size", "content_hash", "created_at"]
    list_filter = ["dataset"]
    search_fields = ["dataset__name", "content_hash"]


@admin.register(models.SFTJob)
class SFTJobAdmin(admin.ModelAdmin):
    list_display = [
        "output_name",
        "dataset_version",
        "base_policy",
        "status",
        "step",
        "total_steps",
    ]
    list_filter = ["status", "base_policy"]
    search_fields = ["output_name"]
