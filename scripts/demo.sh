#!/usr/bin/env bash
# The embedded demo: SQLite, Celery over the filesystem transport, the tiny policy on vLLM (CPU),
# a real worker and the web server. Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export PYTHONUNBUFFERED=1
mkdir -p .cache

$PY manage.py check_services
$PY manage.py migrate --noinput -v0

# One admin account, its password generated once and kept for later demos.
password_file=.cache/demo-admin-password
[ -s $password_file ] || $PY -c "import secrets; print(secrets.token_urlsafe(12))" > $password_file
DJANGO_SUPERUSER_PASSWORD=$(cat $password_file) $PY manage.py demo_admin
$PY manage.py import_problems curation/data/sample_problems.jsonl --set sample

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo; echo "Stopping the demo..."
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
}
trap cleanup INT TERM EXIT

# vLLM spawns processes, which Celery's prefork children may not: the rollout worker is solo.
# Its sandbox gets more slots than cores: tool calls wait on I/O while vLLM holds the CPUs.
SANDBOX_POOL_SIZE=8 $PY -m celery -A workers worker -Q rollout,train --pool solo -n rollout@%h -l warning &
pids+=($!)
$PY -m celery -A workers worker -Q default,sandbox --pool threads -c 2 -n default@%h -l warning &
pids+=($!)
$PY manage.py runserver 127.0.0.1:8000 --noreload &
pids+=($!)

$PY manage.py launch_round --name "demo-seed-$(date +%Y%m%d-%H%M%S)" --kind seed --problem-set sample

cat <<MSG

  START curation is running at http://127.0.0.1:8000/
    log in as:  admin / $(cat $password_file)
    review:     http://127.0.0.1:8000/            (the annotators' queue)
    admin:      http://127.0.0.1:8000/admin/      (rounds, datasets, SFT jobs)
  A seed round on the tiny policy is running; its progress shows on the round's page.
  Ctrl-C stops it all.

MSG
wait "${pids[@]}"
