#!/usr/bin/env bash
# device-check.sh: everything this project checks on a machine with an
# NVIDIA GPU, in one call.
#
#   scripts/device-check.sh prepare
#       On the development machine. The GPU machine has neither a Go
#       toolchain nor a network, so this builds what the check runs
#       (babelfish, stripped, and the bench/nvml binary) into .devbin/,
#       gzipped to fit the transfer.
#   scripts/device-check.sh run [DIR]
#       On the GPU machine, from the repository root:
#         1. nvidia-smi's view of the machine;
#         2. scripts/gpu-check.sh with the GPU idle (memory exact,
#            utilization within 5 points, power within 5%);
#         3. the same under a PyTorch bf16 matrix-product load, when
#            python3 has torch (power within 15%: it swings between the
#            agent's sample and nvidia-smi's reading);
#         4. bench/nvml -calls: what each NVML query of a sample costs;
#         5. bench/nvml -kind real: the agent's scrape latency and CPU on
#            the real NVML beside an empty registry.
#       Every step's output goes to DIR (default .devbin/out) and stdout.
#       Exit status: 0 when every step passed, 1 otherwise, 2 no GPU.
#
# With the device tool of this workplace: prepare here, then run with
# carry [".devbin"] and the command "bash scripts/device-check.sh run $OUT".
set -uo pipefail
cd "$(dirname "$0")/.."

bindir=.devbin

prepare() {
	set -e
	mkdir -p "$bindir"
	echo "device-check: building into $bindir/"
	CGO_ENABLED=1 go build -trimpath -ldflags='-s -w' -o "$bindir/babelfish" ./cmd/babelfish
	CGO_ENABLED=1 go build -trimpath -ldflags='-s -w' -o "$bindir/bench-nvml" ./bench/nvml
	gzip -9f "$bindir/babelfish" "$bindir/bench-nvml"
	ls -l "$bindir"
}

run() {
	local out="${1:-$bindir/out}"
	mkdir -p "$out"
	if ! command -v nvidia-smi >/dev/null 2>&1; then
		echo "device-check: nvidia-smi not found: run this on a machine with an NVIDIA GPU" >&2
		return 2
	fi
	local bin
	bin="$(mktemp -d)"
	for f in babelfish bench-nvml; do
		if [[ -f "$bindir/$f.gz" ]]; then
			gunzip -c "$bindir/$f.gz" >"$bin/$f" && chmod +x "$bin/$f"
		elif command -v go >/dev/null 2>&1; then
			local pkg=./cmd/babelfish
			[[ "$f" == bench-nvml ]] && pkg=./bench/nvml
			go build -o "$bin/$f" "$pkg"
		else
			echo "device-check: $bindir/$f.gz missing and no Go here: run 'scripts/device-check.sh prepare' first" >&2
			return 1
		fi
	done
	local fails=0
	step() { # step NAME COMMAND...: run, tee to DIR/NAME.log, count failures
		local name="$1"
		shift
		echo "== device-check: $name"
		"$@" 2>&1 | tee "$out/$name.log"
		local rc=${PIPESTATUS[0]}
		echo "== device-check: $name exit $rc"
		[[ $rc -eq 0 ]] || fails=$((fails + 1))
	}
	step nvidia-smi nvidia-smi --query-gpu=name,uuid,driver_version,memory.total,memory.used,utilization.gpu,power.draw,power.limit,temperature.gpu,clocks.sm --format=csv
	step gpu-check-idle env BABELFISH_BIN="$bin/babelfish" bash scripts/gpu-check.sh
	if python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; then
		python3 - >"$out/load.log" 2>&1 <<'PY' &
import time, torch
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
end = time.time() + 20
n = 0
t0 = time.time()
while time.time() < end:
    for _ in range(20):
        a @ a
    torch.cuda.synchronize()
    n += 20
print(f"load: {n} bf16 8192^3 products in {time.time() - t0:.1f} s, {2 * 8192**3 * n / (time.time() - t0) / 1e12:.0f} TFLOP/s")
PY
		local load=$!
		sleep 8 # allocation done, clocks and power up
		step gpu-check-load env BABELFISH_BIN="$bin/babelfish" GPU_CHECK_POWER_TOL=15 GPU_CHECK_PORT=19401 bash scripts/gpu-check.sh
		# The bytes behind the MiB figures, from NVML itself, to tell how
		# nvidia-smi rounds them.
		python3 -c '
import pynvml as n
n.nvmlInit()
m = n.nvmlDeviceGetMemoryInfo(n.nvmlDeviceGetHandleByIndex(0), version=n.nvmlMemory_v2)
for k in ("total", "used", "free", "reserved"):
    b = getattr(m, k)
    print(f"nvml memory {k}: {b} bytes = {b / 2**20:.3f} MiB")
' 2>&1 | tee "$out/memory-bytes.log"
		wait "$load"
		cat "$out/load.log"
	else
		echo "== device-check: gpu-check-load skipped: python3 has no CUDA torch here" | tee "$out/gpu-check-load.log"
	fi
	step nvml-calls "$bin/bench-nvml" -calls 200
	step bench-nvml "$bin/bench-nvml" -kind real -scrapes 60 -interval 1s
	rm -rf "$bin"
	echo "device-check: $fails step(s) failed; logs in $out"
	[[ $fails -eq 0 ]]
}

case "${1:-}" in
prepare) prepare ;;
run) run "${2:-}" ;;
*)
	echo "usage: scripts/device-check.sh prepare | run [DIR]" >&2
	exit 2
	;;
esac
