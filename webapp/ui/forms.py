"""Forms of the workbench: they parse and validate; the domain functions decide."""

from __future__ import annotations

from urllib.parse import urlencode

from django import forms
from django.http import QueryDict

from curation.models import Candidate, Domain, ReviewStatus
from curation.review import REJECT_REASONS
from curation.selectors import CORRECTNESS, QUEUE_SORTS, QueueFilters

FILTER_FIELDS = ("round", "candidate", "domain", "status", "correct", "flag", "sort")


class QueueFilterForm(forms.Form):
    round = forms.IntegerField(required=False, min_value=1)
    candidate = forms.ChoiceField(required=False, choices=[("", "Any"), *Candidate.choices[1:]])
    domain = forms.ChoiceField(required=False, choices=[("", "Any"), *Domain.choices])
    status = forms.ChoiceField(required=False, choices=[("", "Any"), *ReviewStatus.choices])
    correct = forms.ChoiceField(
        required=False, choices=[("", "Any"), *((k, k) for k in CORRECTNESS)]
    )
    flag = forms.SlugField(required=False, max_length=32)
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
            sort=data.get("sort") or "oldest",
        )

    def page_number(self) -> int:
        return self._valid().get("page") or 1


def filters_query(filters: QueueFilters, **extra: object) -> str:
    """The query string that reproduces `filters`; the status is always there ("" is any)."""
    params: dict[str, object] = {name: getattr(filters, name) for name in FILTER_FIELDS}
    params.update(extra)
    return urlencode({k: v for k, v in params.items() if v not in (None, "") or k == "status"})


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
