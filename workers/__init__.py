"""Celery workers: rollouts on vLLM, model-written code in the sandbox, SFT jobs."""

from workers.celery import app as celery_app

__all__ = ["celery_app"]
