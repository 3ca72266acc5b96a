"""Forms of the workbench: they parse and validate; the domain functions decide."""

from __future__ import annotations

from urllib.parse import urlencode

from django import forms
from django.contrib.auth import get_user_model
from django.db.models import Q
from django.http import QueryDict

from curation.bulk import BulkAction
from curation.models import Candidate, Domain, ReviewStatus
from curation.review import REJECT_REASONS
from curation.selectors import CORRECTNESS, QUEUE_SORTS, QueueFilters

FILTER_FIELDS = ("round", "candidate", "domain", "status", "correct", "flag", "search", "sort")


class QueueFilterForm(forms.Form):
    round = forms.IntegerField(required=False, min_value=1)
    candidate = forms.ChoiceField(required=False, choices=[("", "Any"), *Candidate.choices[1:]])
    domain = forms.ChoiceField(required=False, choices=[("", "Any"), *Domain.choices])
    status = forms.ChoiceField(required=False, choices=[("", "Any"), *ReviewStatus.choices])
    correct = forms.ChoiceField(
        required=False, choices=[("", "Any"), *((k, k) for k in CORRECTNESS)]
    )
    flag = forms.SlugField(required=False, max_length=32)
    # No max_length: an overlong search is refused with the reason (SearchError), not dropped.
    search = forms.CharField(required=False)
    sort = forms.ChoiceField(required=False, choices=[(k, k) for k in QUEUE_SORTS])
    page = forms.IntegerField(required=False, min_value=1)

    @classmethod
    def from_query(cls, query: QueryDict) -> QueueFilterForm:
        """Bound to the query string; a queue opened without any filter shows what is pending."""
        data = query.copy()
        if not any(name in data for name in FILTER_FIELDS):
            data["status"] = ReviewStatus.PENDING
        return cls(data)

    def _valid(self) -> dict:
        """The valid fields (an invalid value is dropped, not an error: URLs get hand-edited)."""
        self.is_valid()
        return {k: v for k, v in self.cleaned_data.items() if k not in self.errors}

    def filters(self) -> QueueFilters:
        data = self._valid()
        return QueueFilters(
            round=data.get("round"),
            candidate=data.get("candidate") or "",
            domain=data.get("domain") or "",
            status=data.get("status") or "",
            correct=data.get("correct") or "",
            flag=data.get("flag") or "",
            search=data.get("search") or "",
            sort=data.get("sort") or "oldest",
        )

    def page_number(self) -> int:
        return self._valid().get("page") or 1


def filters_query(filters: QueueFilters, **extra: object) -> str:
    """The query string that reproduces `filters`; the status is always there ("" is any)."""
    params: dict[str, object] = {name: getattr(filters, name) for name in FILTER_FIELDS}
    params.update(extra)
    return urlencode({k: v for k, v in params.items() if v not in (None, "") or k == "status"})


class BulkForm(forms.Form):
    """A curator's action on the rows ticked in the queue (`ids`, repeated)."""

    action = forms.ChoiceField(choices=[(a.value, a.value) for a in BulkAction])
    ids = forms.TypedMultipleChoiceField(coerce=int, choices=())
    reason = forms.CharField(required=False, max_length=1000)
    assignee = forms.CharField(required=False, max_length=150)

    def __init__(self, data: QueryDict, *args, **kwargs) -> None:
        super().__init__(data, *args, **kwargs)
        # Any integer id is a valid choice: the service reports the ones that do not exist.
        self.fields["ids"].choices = [(v, v) for v in data.getlist("ids") if v.isdigit()]

    def assignee_user(self):
        name = self.cleaned_data.get("assignee", "").strip()
        if not name:
            return None
        user = get_user_model().objects.filter(username=name).first()
        if user is None:
            raise ValueError(f"no user is named {name!r}")
        return user


class VersionForm(forms.Form):
    """The version the user's page showed: every save carries it."""

    base_version = forms.IntegerField(min_value=1)


class CodeForm(VersionForm):
    code = forms.CharField(required=False, strip=False, widget=forms.Textarea)
    run = forms.BooleanField(required=False)


class TextForm(VersionForm):
    text = forms.CharField(required=False, strip=False, widget=forms.Textarea)


class RunForm(VersionForm):
    following = forms.BooleanField(required=False)


class CommentForm(VersionForm):
    body = forms.CharField(max_length=10_000)
    segment_index = forms.IntegerField(required=False, min_value=0)


class KeepOutputForm(VersionForm):
    reason = forms.CharField(max_length=1000)


class FixForm(VersionForm):
    start = forms.IntegerField(min_value=0)
    end = forms.IntegerField(min_value=0)
    replacement = forms.CharField(required=False, strip=False, max_length=2000)
    delete_lines = forms.BooleanField(required=False)


class RenameForm(forms.Form):
    old = forms.CharField(max_length=200)
    new = forms.CharField(max_length=200)
    in_text = forms.BooleanField(required=False)


class RenameApplyForm(RenameForm, VersionForm):
    pass


OTHER = "other"


class DecideForm(VersionForm):
    decision = forms.ChoiceField(choices=ReviewStatus.choices)
    reason = forms.ChoiceField(
        required=False, choices=[("", "—"), *((r, r) for r in REJECT_REASONS), (OTHER, "Other…")]
    )
    other = forms.CharField(required=False, max_length=1000)
    next = forms.BooleanField(required=False)

    def reason_text(self) -> str:
        reason = self.cleaned_data.get("reason") or ""
        other = (self.cleaned_data.get("other") or "").strip()
        if reason == OTHER or (not reason and other):
            return other
        return reason


def annotators():
    """Active users who may review: by their groups, their own permissions, or as superusers."""
    can_review = Q(groups__permissions__codename="review_trajectory") | Q(
        user_permissions__codename="review_trajectory"
    )
    return (
        get_user_model()
        .objects.filter(can_review | Q(is_superuser=True), is_active=True)
        .distinct()
        .order_by("username")
    )


class AssignForm(forms.Form):
    """A curator's batch for one annotator: a round's pending candidates (or all), a quota."""

    annotator = forms.ModelChoiceField(queryset=annotators())
    round = forms.ChoiceField(required=False)
    quota = forms.IntegerField(min_value=1, max_value=100_000, initial=50)

    def __init__(self, *args, rounds: list[dict], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["round"].choices = [("", "Any round"), *((r["id"], r["name"]) for r in rounds)]
