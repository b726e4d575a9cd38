#!/usr/bin/env bash
# Programs the tests use that pip cannot install: Graphviz's `dot` (graph drawings) and Chromium
# (the step-through page is tested in a real headless browser). Installs what is missing with
# apt-get when it can; otherwise says so, and the tests that need them are skipped with a reason.
set -u
missing=()
command -v dot >/dev/null 2>&1 || missing+=(graphviz)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "installing ${missing[*]} with apt-get"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}") >/tmp/chainrule-apt.log 2>&1 \
    || { echo "apt-get failed (see /tmp/chainrule-apt.log); tests needing ${missing[*]} will be skipped"; }
else
  echo "cannot install ${missing[*]} here (needs apt-get as root); tests needing them will be skipped"
fi
exit 0
