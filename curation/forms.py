"""Forms for curators' pages (the console and the admin): they parse and validate; the services
decide. Each one checks through the same service as the API (`services.round_settings`,
`services.sft_job_config_validate`, `services.evaluation_sweep_launch`...), and puts a
refusal on the field it names.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.http import HttpResponse

from curation import models, selectors, services
from curation.datasets import ROUND_KIND_OF_DATASET, dataset_default_rounds
from curation.evaluation import Table
from curation.hints import HintConfig
from curation.models import Domain, RoundKind, Split
from curation.problems import FORMATS


class ProblemImportForm(forms.Form):
    file = forms.FileField(
        help_text="JSONL (one problem per line), or a Parquet, Arrow or CSV file in the Hugging "
        "Face datasets layout: a published benchmark's columns (MATH-500, AIME, AMC, GPQA, "
        "LiveCodeBench, HumanEval, MBPP), or the generic ones. Math: problem, answer; code: "
        "problem, tests, starter_code; multiple choice: question, choices, answer."
    )
    name = forms.SlugField(
        max_length=100, help_text="The problem set to create, or to update (matched on ids)."
    )
    split = forms.ChoiceField(choices=Split.choices, initial=Split.TRAIN)
    domain = forms.ChoiceField(
        choices=[("", "Infer from each record"), *Domain.choices], required=False
    )
    id_field = forms.CharField(
        max_length=100,
        required=False,
        help_text="The field that identifies a record, or 'line' to number them "
        "(default: id, idx, question_number...).",
    )
    format = forms.ChoiceField(
        choices=lambda: [("", "Find it from the columns"), *((f.name, f.name) for f in FORMATS)],
        required=False,
        help_text="A published benchmark's layout (MATH-500, GPQA, LiveCodeBench, HumanEval, "
        "MBPP...) or the generic one.",
    )


def _hint_choices() -> list[tuple[str, str]]:
    return [(h.name, f"{h.name} ({h.domain})") for h in services.hint_library()]


class RoundForm(forms.ModelForm):
    """A round's settings, with its hint and tool configs as fields instead of raw JSON."""

    hints = forms.MultipleChoiceField(
        choices=_hint_choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="Hinted samples draw among the chosen hints of their problem's domain.",
    )
    conjunctions = forms.CharField(
        initial="Wait, Alternatively",
        help_text="Comma-separated words at which a hint may be inserted.",
    )
    conjunction_probability = forms.FloatField(min_value=0, max_value=1, initial=0.5)
    max_hints = forms.IntegerField(
        min_value=0, initial=3, help_text="Conjunction hints per trajectory."
    )
    end_of_thinking = forms.BooleanField(
        required=False, initial=True, label="Hint at the end of thinking"
    )
    end_repeats = forms.IntegerField(
        min_value=0, initial=1, help_text="Test-time scaling: end-of-thinking hints (the k)."
    )
    max_tool_calls = forms.IntegerField(min_value=0, max_value=100, initial=6)
    timeout_s = forms.FloatField(
        min_value=0.1, max_value=600, initial=10, label="Sandbox time limit (s)"
    )
    memory_mb = forms.IntegerField(
        min_value=16, max_value=65536, initial=1024, label="Sandbox memory (MB)"
    )
    notebook = forms.BooleanField(
        required=False, help_text="One interpreter session per trajectory, kept across cells."
    )
    run_code = forms.ChoiceField(
        choices=[
            ("all", "every sample"),
            ("hinted", "hinted samples only (the paper's greedy base runs no tools)"),
            ("none", "no sample (tools off: the QwQ-RFT control)"),
        ],
        initial="all",
        required=False,
        label="Code runs for",
    )

    class Meta:
        model = models.Round
        fields = [
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
        ]
        help_texts = {
            "kind": "The paper's sampling: seed, 1 hinted + 1 plain at T=0; RFT, 16 plain at "
            "T=0.6, top-p 0.95; eval, 1 plain at T=0.",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        hint = {**HintConfig().to_dict(), **(self.instance.hint_config or {})}
        tools = self.instance.tool_config or {}
        initial = {
            **{
                k: hint[k]
                for k in (
                    "hints",
                    "conjunction_probability",
                    "max_hints",
                    "end_of_thinking",
                    "end_repeats",
                )
            },
            "conjunctions": ", ".join(hint["conjunctions"]),
            "max_tool_calls": tools.get("max_calls", hint["max_tool_calls"]),
            "timeout_s": tools.get("timeout_s", 10),
            "memory_mb": tools.get("memory_mb", 1024),
            "notebook": tools.get("notebook", False),
            "run_code": tools.get("run_code", "all"),
        }
        for name, value in initial.items():
            self.fields[name].initial = value
        self.fields["reviews_required"].required = False  # blank: one review per item
        if not self.instance.pk:  # blank sampling settings take the chosen kind's defaults
            for name in services.ROUND_DEFAULTS[RoundKind.SEED]:
                self.fields[name].required = False
                self.fields[name].initial = None
                self.fields[name].help_text = "Blank: the kind's default."

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if not data.get("hints"):
            self.add_error("hints", "choose at least one hint")
            return data
        conjunctions = [w.strip() for w in data.get("conjunctions", "").split(",") if w.strip()]
        hint_config = {
            "hints": data["hints"],
            "conjunctions": conjunctions,
            "conjunction_probability": data.get("conjunction_probability", 0.5),
            "max_hints": data.get("max_hints", 3),
            "end_of_thinking": data.get("end_of_thinking", False),
            "end_repeats": data.get("end_repeats", 1),
            "max_tool_calls": data.get("max_tool_calls", 6),
        }
        tool_config = {
            "max_calls": data.get("max_tool_calls", 6),
            "timeout_s": data.get("timeout_s", 10),
            "memory_mb": data.get("memory_mb", 1024),
            "notebook": data.get("notebook", False),
            "run_code": data.get("run_code") or "all",
        }
        sampling = {name: data.get(name) for name in services.ROUND_DEFAULTS[RoundKind.SEED]}
        try:
            self.settings = services.round_settings(
                kind=data.get("kind", RoundKind.SEED),
                split=data.get("split"),
                max_tokens=data.get("max_tokens"),
                reviews_required=data.get("reviews_required"),
                hint_config=hint_config,
                tool_config=tool_config,
                **sampling,
            )
        except services.SettingError as exc:
            field = {"hint_config": "hints", "max_calls": "max_tool_calls"}.get(
                exc.field, exc.field
            )
            self.add_error(field if field in self.fields else None, str(exc))
        return data

    def save(self, commit: bool = True) -> models.Round:
        for name, value in self.settings.items():
            setattr(self.instance, name, value)
        return super().save(commit)


def csv_download(text: str, filename: str) -> HttpResponse:
    response = HttpResponse(text, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


class EvaluationFilterForm(forms.Form):
    """Which eval rounds the evaluation page reads (all of them when nothing is chosen)."""

    policy = forms.ModelMultipleChoiceField(
        queryset=models.Policy.objects.order_by("created_at", "id"), required=False
    )
    problem_set = forms.ModelMultipleChoiceField(
        queryset=models.ProblemSet.objects.all(), required=False, label="Problem sets"
    )

    def table(self) -> Table:
        """The table of the eval rounds these filters choose (every one without a choice)."""
        chosen = self.cleaned_data if self.is_valid() else {}
        return selectors.evaluation_table(
            policies=chosen.get("policy"), problem_sets=chosen.get("problem_set")
        )


class EvaluationSweepForm(forms.Form):
    """One eval round per number of end-of-thinking hints, launched at once
    (`services.evaluation_sweep_launch` checks everything; its refusals land on the fields)."""

    name = forms.SlugField(max_length=150, help_text="The rounds are named <name>-end<k>.")
    policy = forms.ModelChoiceField(
        queryset=models.Policy.objects.order_by("created_at", "id"), required=False
    )
    problem_sets = forms.ModelMultipleChoiceField(
        queryset=models.ProblemSet.objects.all(), required=False
    )
    split = forms.ChoiceField(
        choices=[("", "Every split"), *Split.choices], required=False, initial=Split.TEST
    )
    end_repeats = forms.CharField(
        initial=", ".join(str(k) for k in services.SWEEP_END_REPEATS),
        help_text="Comma-separated numbers of end-of-thinking hints, one round each.",
    )
    samples = forms.IntegerField(initial=1, help_text="Hinted samples per problem.")
    temperature = forms.FloatField(initial=0.0)
    max_tokens = forms.IntegerField(required=False, help_text="Blank: the round default.")

    def clean_end_repeats(self) -> list[int]:
        words = [w.strip() for w in self.cleaned_data["end_repeats"].split(",") if w.strip()]
        try:
            return [int(w) for w in words]
        except ValueError:
            raise forms.ValidationError(
                "whole numbers separated by commas, e.g. 0, 1, 2, 4"
            ) from None


class CompareForm(forms.Form):
    old = forms.TypedChoiceField(coerce=int, label="From version")
    new = forms.TypedChoiceField(coerce=int, label="To version")

    def __init__(self, *args: Any, numbers: list[int], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = [(n, f"v{n}") for n in numbers]
        for name in ("old", "new"):
            self.fields[name].choices = choices
        if len(numbers) >= 2:
            self.fields["old"].initial, self.fields["new"].initial = numbers[-2], numbers[-1]


class FreezeForm(forms.Form):
    """The rounds a new version takes, the dataset's latest round with approved candidates
    checked; with none checked the service takes that default too."""

    rounds = forms.ModelMultipleChoiceField(
        queryset=models.Round.objects.none(),
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="Only approved candidates of these rounds; a D_START version refuses a problem "
        "with more than one.",
    )

    def __init__(self, *args: Any, dataset: models.Dataset, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        rounds = models.Round.objects.order_by("-created_at", "-id")
        round_kind = ROUND_KIND_OF_DATASET.get(dataset.kind)
        self.fields["rounds"].queryset = rounds.filter(kind=round_kind) if round_kind else rounds
        self.fields["rounds"].initial = dataset_default_rounds(dataset=dataset)


class SFTJobForm(forms.ModelForm):
    """Launch a job: a frozen version, a base policy, the new policy's name, hyperparameters."""

    learning_rate = forms.FloatField(min_value=0, initial=7e-6)
    num_train_epochs = forms.FloatField(min_value=0, initial=3.0)
    max_steps = forms.IntegerField(initial=-1, help_text="If > 0, wins over epochs.")
    max_length = forms.IntegerField(min_value=2, initial=16384, help_text="Tokens per text.")
    per_device_train_batch_size = forms.IntegerField(min_value=1, initial=1)
    gradient_accumulation_steps = forms.IntegerField(min_value=1, initial=1)
    warmup_ratio = forms.FloatField(min_value=0, max_value=0.99, initial=0.03)
    packing = forms.BooleanField(required=False, initial=True)
    seed = forms.IntegerField(initial=42)
    distributed = forms.ChoiceField(
        choices=[("single", "single process"), ("fsdp", "FSDP"), ("zero3", "DeepSpeed ZeRO-3")],
        required=False,
        initial="single",
        help_text="FSDP and ZeRO-3 shard the model over num_processes GPUs of the train host.",
    )
    num_processes = forms.IntegerField(
        min_value=1, required=False, initial=1, help_text="One per GPU."
    )
    extra_config = forms.JSONField(
        required=False,
        initial=dict,
        help_text='Other training.config keys, e.g. {"lr_scheduler_type": "linear"}.',
    )

    HYPERPARAMETERS = (
        "learning_rate",
        "num_train_epochs",
        "max_steps",
        "max_length",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "warmup_ratio",
        "packing",
        "seed",
        "distributed",
        "num_processes",
    )

    class Meta:
        model = models.SFTJob
        fields = ["dataset_version", "base_policy", "output_name"]

    def clean_output_name(self) -> str:
        name = self.cleaned_data["output_name"]
        if models.Policy.objects.filter(name=name).exists():
            raise forms.ValidationError(f"a policy named {name!r} already exists")
        return name

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        extra = data.get("extra_config") or {}
        if not isinstance(extra, dict):
            self.add_error("extra_config", "expected a JSON object")
            return data
        given = {k: data[k] for k in self.HYPERPARAMETERS if data.get(k) not in (None, "")}
        config = {**given, **extra}
        try:
            services.sft_job_config_validate(config)
        except ValueError as exc:
            if set(config) & set(services.SFT_RESERVED):  # a key that only extra_config can hold
                self.add_error("extra_config", str(exc))
                return data
            raise forms.ValidationError(str(exc)) from None
        self.config = config
        return data
