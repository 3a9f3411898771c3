#!/usr/bin/env bash
# Debian's Chromium and ChromeDriver for the report's browser test (tests/test_workflow.py,
# test_the_report_renders_in_a_browser), installed with apt-get when missing.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    exit 0
fi
t0=$SECONDS
{
    DEBIAN_FRONTEND=noninteractive apt-get update -q &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            chromium chromium-driver fonts-dejavu-core
} >&2
echo "chromium installed in $((SECONDS - t0)) s"
