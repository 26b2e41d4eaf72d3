#!/bin/sh
# Installs Debian's `prometheus` package (the server and promtool) for the telemetry
# integration test. Idempotent: does nothing when both binaries are already on PATH.
# Needs root (or passwordless sudo); prints the reason and exits 1 otherwise.
set -eu
if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "install_prometheus.sh: prometheus is missing and this user cannot install packages" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
# The package's postinst would start a system service; policy-rc.d 101 keeps it stopped.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get install -y --no-install-recommends prometheus >/dev/null 2>&1 || {
  $SUDO apt-get update >/dev/null
  $SUDO apt-get install -y --no-install-recommends prometheus >/dev/null
}
command -v prometheus >/dev/null && command -v promtool >/dev/null
