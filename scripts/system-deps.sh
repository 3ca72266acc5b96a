#!/usr/bin/env bash
# Debian packages the project needs: bubblewrap (the sandbox), Chromium and its driver (browser
# tests, driven by Playwright; its own browser download is not reachable here), docker-compose
# (validates docker-compose.yml; no Docker engine runs here).
set -euo pipefail
packages=(bubblewrap chromium chromium-driver docker-compose)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "Installing Debian packages: ${missing[*]}"
sudo_cmd=""
[ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
$sudo_cmd apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
