"""/api/: the router's endpoints, a dataset's versions nested under it, and the OpenAPI schema.

The browsable API (DRF's HTML renderer, CSP-clean) lists every endpoint at /api/; /api/docs/ renders
the schema with Swagger UI.
"""

from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from webapp.api import evaluations, teams, views

router = DefaultRouter()
router.register("problem-sets", views.ProblemSetViewSet, basename="problemset")
router.register("problems", views.ProblemViewSet, basename="problem")
router.register("policies", views.PolicyViewSet, basename="policy")
router.register("rounds", views.RoundViewSet, basename="round")
router.register("trajectories", views.TrajectoryViewSet, basename="trajectory")
router.register("datasets", views.DatasetViewSet, basename="dataset")
router.register("sft-jobs", views.SFTJobViewSet, basename="sftjob")
router.register("audit-events", views.AuditEventViewSet, basename="auditevent")
router.register("evaluations", evaluations.EvaluationViewSet, basename="evaluation")
router.register("assignments", teams.AssignmentViewSet, basename="assignment")
router.register("agreement", teams.AgreementViewSet, basename="agreement")

versions = views.DatasetVersionViewSet
version_paths = [
    path("", versions.as_view({"get": "list", "post": "create"}), name="datasetversion-list"),
    path("<int:number>/", versions.as_view({"get": "retrieve"}), name="datasetversion-detail"),
    path("<int:number>/diff/", versions.as_view({"get": "diff"}), name="datasetversion-diff"),
    path("<int:number>/card/", versions.as_view({"get": "card"}), name="datasetversion-card"),
    # The URL has no trailing slash; a redirect would lose curl users, so take both.
    re_path(
        r"^(?P<number>[0-9]+)/export/?$",
        versions.as_view({"get": "export"}),
        name="datasetversion-export",
    ),
]

app_name = "api"
urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # Swagger UI from drf-spectacular-sidecar's static files; its init script is a second
    # request (`?script`), so the page needs no inline script under the CSP.
    path(
        "docs/",
        SpectacularSwaggerSplitView.as_view(
            url_name="api:schema", template_name="api/swagger_ui.html", title="START curation API"
        ),
        name="docs",
    ),
    path("datasets/<slug:dataset_name>/versions/", include(version_paths)),
    path("", include(router.urls)),
    re_path(r"^(?P<path>[\s\S]*)$", views.not_found),  # any path, newlines included
]
