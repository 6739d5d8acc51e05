#!/usr/bin/env bash
# Install the Debian packages tests use (chromium for the browser test, ffmpeg for video previews, postgresql for
# the store's PostgreSQL tests: they start their own throwaway cluster with its initdb/pg_ctl), once.
set -u
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)
{ command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } || need+=(postgresql)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "[cvi-lab] missing system packages: ${need[*]} (tests that need them will be skipped)"; exit 0
fi
echo "[cvi-lab] installing system packages: ${need[*]}"
(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null) \
  || echo "[cvi-lab] could not install ${need[*]}; tests that need them will be skipped"
exit 0
