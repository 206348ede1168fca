#!/usr/bin/env bash
# gpu-check.sh: check the GPU agent against nvidia-smi on a real NVIDIA machine.
#
# Builds babelfish, runs `babelfish gpu-agent` on the real NVML (no --fake-gpus),
# scrapes its /metrics and compares every GPU with
# `nvidia-smi --query-gpu=uuid,memory.total,memory.used,utilization.gpu,power.draw,memory.free,memory.reserved`:
#   memory total, used, free and reserved  exact (MiB)
#   utilization            within 5 points
#   power draw             within 5%
# A value nvidia-smi reports as [N/A] must be absent from /metrics too.
#
# Exit status: 0 all agree, 1 a mismatch or a failure, 2 no NVIDIA GPU here.
# Env: GPU_CHECK_PORT (default 19400) for the agent's loopback port;
# GPU_CHECK_POWER_TOL (default 5) the power tolerance in percent (a GPU
# under load swings more between the agent's sample and nvidia-smi's);
# BABELFISH_BIN a prebuilt babelfish to run instead of building one (a GPU
# machine without Go: see scripts/device-check.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

port="${GPU_CHECK_PORT:-19400}"
power_tol="${GPU_CHECK_POWER_TOL:-5}"

if ! command -v nvidia-smi >/dev/null 2>&1; then
	echo "gpu-check: nvidia-smi not found: this check needs a machine with an NVIDIA GPU and its driver; nothing was compared" >&2
	exit 2
fi
if ! gpus="$(nvidia-smi -L 2>&1)" || ! grep -q '^GPU ' <<<"$gpus"; then
	echo "gpu-check: nvidia-smi sees no GPU ($gpus); nothing was compared" >&2
	exit 2
fi
command -v awk >/dev/null 2>&1 || { echo "gpu-check: awk not found" >&2; exit 1; }
if [[ -z "${BABELFISH_BIN:-}" ]] && ! command -v go >/dev/null 2>&1; then
	echo "gpu-check: go not found: install Go or set BABELFISH_BIN to a prebuilt babelfish" >&2
	exit 1
fi
# fetch URL prints the body, with curl or else Python's standard library.
if command -v curl >/dev/null 2>&1; then
	fetch() { curl -fsS "$1"; }
elif command -v python3 >/dev/null 2>&1; then
	fetch() { python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' "$1"; }
else
	echo "gpu-check: neither curl nor python3 found to scrape the agent" >&2
	exit 1
fi

tmp="$(mktemp -d)"
agent=""
cleanup() {
	if [[ -n "$agent" ]]; then
		kill "$agent" 2>/dev/null || true
		wait "$agent" 2>/dev/null || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT

bin="${BABELFISH_BIN:-}"
if [[ -z "$bin" ]]; then
	echo "gpu-check: building babelfish"
	go build -o "$tmp/babelfish" ./cmd/babelfish
	bin="$tmp/babelfish"
fi

echo "gpu-check: starting the agent on 127.0.0.1:$port"
env -u NODE_NAME "$bin" gpu-agent --listen "127.0.0.1:$port" --interval 250ms \
	--pod-resources-socket "" --publish=false >"$tmp/agent.log" 2>&1 &
agent=$!
for _ in $(seq 1 60); do
	if fetch "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then
		break
	fi
	if ! kill -0 "$agent" 2>/dev/null; then
		echo "gpu-check: the agent exited:" >&2
		cat "$tmp/agent.log" >&2
		agent=""
		exit 1
	fi
	sleep 0.5
done
fetch "http://127.0.0.1:$port/healthz" >/dev/null || { echo "gpu-check: agent not healthy after 30 s" >&2; cat "$tmp/agent.log" >&2; exit 1; }
sleep 1 # a few samples

# Scrape and query back to back so both see the same moment.
fetch "http://127.0.0.1:$port/metrics" >"$tmp/metrics"
nvidia-smi --query-gpu=uuid,memory.total,memory.used,utilization.gpu,power.draw,memory.free,memory.reserved \
	--format=csv,noheader,nounits >"$tmp/smi"

awk -v OFS='\t' -v tol="$power_tol" '
function has(name, u) { return ((name, u) in v) }
function report(u, what, smi, agent, ok) {
	printf "%-42s %-12s nvidia-smi=%-10s agent=%-10s %s\n", u, what, smi, agent, ok ? "ok" : "MISMATCH"
	if (!ok) fails++
}
function na(s) { return s ~ /N\/A|Not Supported/ }
FNR == NR {
	if ($0 ~ /^#/ || !match($0, /UUID="[^"]*"/)) next
	u = substr($0, RSTART + 6, RLENGTH - 7)
	name = $0; sub(/\{.*/, "", name)
	v[name, u] = $NF
	agentgpu[u] = 1
	next
}
{
	n = split($0, f, /, */)
	u = f[1]; total = f[2]; used = f[3]; util = f[4]; power = f[5]; free = f[6]; reserved = f[7]
	seen[u] = 1
	if (!(u in agentgpu)) { report(u, "present", "yes", "no", 0); next }

	a = has("DCGM_FI_DEV_FB_TOTAL", u) ? v["DCGM_FI_DEV_FB_TOTAL", u] : "absent"
	report(u, "memory.total", total, a, a == total + 0)
	a = has("DCGM_FI_DEV_FB_USED", u) ? v["DCGM_FI_DEV_FB_USED", u] : "absent"
	ok = (a == used + 0)
	report(u, "memory.used", used, a, ok)
	if (!ok && has("DCGM_FI_DEV_FB_RESERVED", u))
		printf "%-42s (the agent reports %s MiB reserved by the driver apart from used)\n", "", v["DCGM_FI_DEV_FB_RESERVED", u]
	a = has("DCGM_FI_DEV_FB_FREE", u) ? v["DCGM_FI_DEV_FB_FREE", u] : "absent"
	report(u, "memory.free", free, a, a == free + 0)
	if (na(reserved)) {
		report(u, "memory.reserved", reserved, has("DCGM_FI_DEV_FB_RESERVED", u) ? v["DCGM_FI_DEV_FB_RESERVED", u] : "absent", 1)
	} else {
		a = has("DCGM_FI_DEV_FB_RESERVED", u) ? v["DCGM_FI_DEV_FB_RESERVED", u] : "absent"
		report(u, "memory.reserved", reserved, a, a == reserved + 0)
	}

	if (na(util)) {
		report(u, "utilization", util, has("DCGM_FI_DEV_GPU_UTIL", u) ? v["DCGM_FI_DEV_GPU_UTIL", u] : "absent", !has("DCGM_FI_DEV_GPU_UTIL", u))
	} else {
		a = has("DCGM_FI_DEV_GPU_UTIL", u) ? v["DCGM_FI_DEV_GPU_UTIL", u] : "absent"
		d = a - util; if (d < 0) d = -d
		report(u, "utilization", util, a, a != "absent" && d <= 5)
	}

	if (na(power)) {
		report(u, "power.draw", power, has("DCGM_FI_DEV_POWER_USAGE", u) ? v["DCGM_FI_DEV_POWER_USAGE", u] : "absent", !has("DCGM_FI_DEV_POWER_USAGE", u))
	} else {
		a = has("DCGM_FI_DEV_POWER_USAGE", u) ? v["DCGM_FI_DEV_POWER_USAGE", u] : "absent"
		d = a - power; if (d < 0) d = -d
		report(u, "power.draw", power " W", a " W", a != "absent" && d <= tol / 100 * power)
	}
}
END {
	for (u in agentgpu) if (!(u in seen)) report(u, "present", "no", "yes", 0)
	if (fails > 0) { printf "gpu-check: %d mismatch(es)\n", fails; exit 1 }
	print "gpu-check: the agent agrees with nvidia-smi on every GPU"
}' "$tmp/metrics" "$tmp/smi"
