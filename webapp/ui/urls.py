"""The workbench's pages and htmx endpoints, included at the site root as namespace "ui"."""

from django.urls import path

from webapp.ui import views

app_name = "ui"

urlpatterns = [
    path("", views.queue, name="queue"),
    path("counts/", views.queue_counts, name="queue_counts"),
    path("next/", views.claim_next, name="next"),
    path("bulk/", views.queue_bulk, name="bulk"),
    path("progress/", views.progress, name="progress"),
    path("progress/assign/", views.assign, name="assign"),
    path("demo-status/", views.demo_status, name="demo_status"),
    path("t/<int:pk>/", views.trajectory_page, name="trajectory"),
    path("t/<int:pk>/score/", views.score, name="score"),
    path("t/<int:pk>/claim/", views.claim, name="claim"),
    path("t/<int:pk>/release/", views.release, name="release"),
    path("t/<int:pk>/decide/", views.decide, name="decide"),
    path("t/<int:pk>/segments/<int:index>/", views.segment, name="segment"),
    path("t/<int:pk>/segments/<int:index>/edit/", views.segment_edit, name="segment_edit"),
    path("t/<int:pk>/segments/<int:index>/run/", views.segment_run, name="segment_run"),
    path("t/<int:pk>/segments/<int:index>/delete/", views.segment_delete, name="segment_delete"),
    path("t/<int:pk>/segments/<int:index>/keep/", views.segment_keep, name="segment_keep"),
    path("t/<int:pk>/fix/", views.fix, name="fix"),
    path("t/<int:pk>/rename/", views.rename, name="rename"),
    path("t/<int:pk>/undo/", views.undo, name="undo"),
    path("t/<int:pk>/diff/", views.diff, name="diff"),
    path("t/<int:pk>/revisions/<int:revision_pk>/", views.revision, name="revision"),
    path("t/<int:pk>/baselines/", views.baselines, name="baselines"),
    path("t/<int:pk>/guidelines/", views.guidelines, name="guidelines"),
    path("t/<int:pk>/comments/", views.comment, name="comment"),
]
