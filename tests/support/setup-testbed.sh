#!/usr/bin/env bash
# Install the Debian packages the integration tests run for real: Dovecot (IMAP + LMTP),
# Postfix, jq (the README's examples pipe JSON into it) and msmtp (a test sends through it); with --bench also getmail6,
# the benchmark's other peer. Does nothing when they are
# already there. The packages' own services are not started: the tests run private
# instances on loopback high ports.
set -euo pipefail

missing=()
command -v dovecot >/dev/null 2>&1 || missing+=(dovecot-imapd)
[ -e /usr/lib/dovecot/lmtp ] || missing+=(dovecot-lmtpd)
[ -e /usr/lib/dovecot/imap ] || missing+=(dovecot-imapd)
command -v postfix >/dev/null 2>&1 || [ -x /usr/sbin/postfix ] || missing+=(postfix)
command -v jq >/dev/null 2>&1 || missing+=(jq)
command -v msmtp >/dev/null 2>&1 || missing+=(msmtp)  # tests/integration/test_token.py: passwordeval
# --bench: also the peers benchmarks/run.py compares mailbot with (getmail6, msmtp and its queue scripts).
if [ "${1:-}" = "--bench" ]; then
  command -v getmail >/dev/null 2>&1 || missing+=(getmail6)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then sudo=(); elif command -v sudo >/dev/null 2>&1; then sudo=(sudo); else
  echo "setup-testbed: need root to install: ${missing[*]} (integration tests will be skipped)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
# policy-rc.d 101 = "do not start services" while the packages install.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
  "${sudo[@]}" chmod +x "$policy"
  created_policy=1
fi
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
[ "$created_policy" -eq 1 ] && "${sudo[@]}" rm -f "$policy"
exit 0
