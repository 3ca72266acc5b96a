#!/usr/bin/env bash
# The embedded demo: SQLite, Celery over the filesystem transport, the tiny policy on vLLM (CPU),
# two workers and the web server, run by supervisord (a process that dies is restarted), each
# logging to .demo/logs/<name>.log. The web app serves while the tiny policy is built; its pages
# show the build's progress, and the first round starts when the policy is ready.
# Ctrl-C stops everything and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
PY=$root/.venv/bin/python
demo=$root/.demo
logs=$demo/logs
url=http://127.0.0.1:8000/

# In a terminal, the demo runs as its own foreground job (job control gives it its own process
# group): Ctrl-C reaches supervisord and this job only, not `make` or this shell, so both exit 0
# once everything has stopped.
if [ -t 0 ] && [ -z "${DEMO_JOB:-}" ]; then
  set -m
  DEMO_JOB=1 "$root/scripts/demo.sh" "$@"
  exit $?
fi

mkdir -p "$logs" .cache
export PYTHONUNBUFFERED=1 DEMO_STATUS_FILE=$demo/status.json

quiet() {  # run a step with its output in setup.log; show the log if it fails
  local what=$1
  shift
  echo "== $what: $*" >> "$logs/setup.log"
  if ! "$@" >> "$logs/setup.log" 2>&1; then
    echo "The demo's setup failed at: $what. Its log ($logs/setup.log):" >&2
    tail -n 40 "$logs/setup.log" >&2
    exit 1
  fi
}

: > "$logs/setup.log"
quiet "checking the database and the broker" $PY manage.py check_services
quiet "migrating the database" $PY manage.py migrate --noinput
# One admin account, its password generated once and kept for later demos.
password_file=.cache/demo-admin-password
[ -s $password_file ] || $PY -c "import secrets; print(secrets.token_urlsafe(12))" > $password_file
password=$(cat $password_file)
export DJANGO_SUPERUSER_PASSWORD=$password
quiet "creating the admin account" $PY manage.py demo_admin
unset DJANGO_SUPERUSER_PASSWORD
quiet "importing the sample problems" \
  $PY manage.py import_problems curation/data/sample_problems.jsonl --set sample
quiet "importing the held-out sample problems" \
  $PY manage.py import_problems curation/data/sample_eval.jsonl --set sample-eval --split test
rm -f "$DEMO_STATUS_FILE"

# vLLM spawns processes, which Celery's prefork children may not: the rollout worker is solo.
# Its sandbox gets more slots than cores: tool calls wait on I/O while vLLM holds the CPUs.
# stopasgroup: vLLM's engine processes stop with their worker. The rollout worker stops cold
# (SIGQUIT): a warm stop waits for its running chunk, which a stopped demo would not finish
# anyway (the chunk goes back on the queue by itself when the demo runs again).
cat > "$demo/supervisord.conf" <<CONF
[supervisord]
nodaemon=true
silent=true
logfile=$logs/supervisord.log
pidfile=$demo/supervisord.pid
directory=$root

[program:web]
command=$PY manage.py runserver 127.0.0.1:8000 --noreload
stdout_logfile=$logs/web.log
redirect_stderr=true
stopasgroup=true
autorestart=true
priority=1

[program:rollout-worker]
command=$PY -m celery -A workers worker -Q rollout,train --pool solo -n rollout@%%h -l info
environment=SANDBOX_POOL_SIZE="8"
stdout_logfile=$logs/rollout-worker.log
redirect_stderr=true
stopsignal=QUIT
stopasgroup=true
stopwaitsecs=15
autorestart=true

[program:default-worker]
command=$PY -m celery -A workers worker -Q default,sandbox --pool threads -c 2 -n default@%%h -l info
stdout_logfile=$logs/default-worker.log
redirect_stderr=true
stopasgroup=true
stopwaitsecs=15
autorestart=true

[program:first-round]
command=$PY manage.py demo_first_round
stdout_logfile=$logs/first-round.log
redirect_stderr=true
stopasgroup=true
startsecs=0
autorestart=false
CONF

supervisord=
stop() {
  trap - INT TERM
  echo
  echo "Stopping the demo..."
  # From a terminal, Ctrl-C has reached supervisord already; a signal from elsewhere has not.
  kill -TERM "$supervisord" 2>/dev/null || true
}
trap stop INT TERM

started=$SECONDS
"$root/.venv/bin/supervisord" -c "$demo/supervisord.conf" &
supervisord=$!

until $PY -c "import urllib.request as u; u.urlopen('${url}login/', timeout=2)" 2>/dev/null; do
  if ! kill -0 "$supervisord" 2>/dev/null; then
    echo "supervisord stopped before the web app answered; see $logs/" >&2
    exit 1
  fi
  if [ $((SECONDS - started)) -gt 120 ]; then
    echo "The web app did not answer within 120 s; see $logs/web.log:" >&2
    tail -n 20 "$logs/web.log" >&2
    kill -TERM "$supervisord"
    wait "$supervisord" || true
    exit 1
  fi
  sleep 0.5
done

lines=(
  "START curation is running at $url"
  "log in as:  admin / $password"
  ""
  "review:     ${url}           the annotators' queue"
  "console:    ${url}console/   datasets, jobs, Evaluation"
  "admin:      ${url}admin/     rounds, datasets, SFT jobs"
  "API docs:   ${url}api/docs/"
  ""
  "The tiny policy is built now (the pages show its progress);"
  "then a seed round on the sample problems starts; an eval round"
  "and an eval sweep follow it (Console > Evaluation: the table, the chart)."
  "Logs: .demo/logs/   Ctrl-C stops it all."
)
width=0
for line in "${lines[@]}"; do [ ${#line} -gt $width ] && width=${#line}; done
border=$(printf '%*s' $((width + 2)) '' | tr ' ' '-')
echo
echo "+$border+"
for line in "${lines[@]}"; do printf '| %-*s |\n' "$width" "$line"; done
echo "+$border+"

# wait returns early when a signal is trapped: wait again until supervisord has stopped it all.
while kill -0 "$supervisord" 2>/dev/null; do
  wait "$supervisord" || true
done
echo "The demo has stopped."
exit 0
