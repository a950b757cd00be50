#!/usr/bin/env bash
# Install size and time to a first result of a fresh install (docs/install.md). Run from the
# project root; it builds the wheel of this checkout, makes a new venv /tmp/msv-NAME, installs
# torch (TORCH_SPEC) and then morphoscope[EXTRAS], and prints the times and sizes:
#
#   bash bench/measure_install.sh core ""       # the core install
#   bash bench/measure_install.sh all all       # morphoscope[all]
#   .venv/bin/python bench/extra_sizes.py /tmp/msv-core /tmp/msv-all   # what each extra adds
#
# For the core it also shows the one-line message of each command whose extra is missing.
set -u
NAME=$1; EXTRAS=${2:-}
TORCH_SPEC=${TORCH_SPEC:-"torch==2.14.1 torchvision==0.29.1"}
V=/tmp/msv-$NAME; WHEELS=/tmp/msv-wheel
PYTHON=${PYTHON:-python3}
rm -rf "$V" "$WHEELS"; "$PYTHON" -m venv "$V"
"$V/bin/pip" wheel -q --no-deps -w "$WHEELS" . >/dev/null
WHL=$(ls $WHEELS/morphoscope-*.whl)
SPEC="$WHL"; [ -n "$EXTRAS" ] && SPEC="morphoscope[$EXTRAS] @ file://$WHL"
now() { date +%s.%N; }
quiet() { grep -v "is ignored: it is neither a file nor a directory" || true; }  # this machine's local indexes
echo "python: $("$PYTHON" --version 2>&1); cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2); cores: $(nproc)"
t0=$(now); "$V/bin/pip" install -q $TORCH_SPEC 2>&1 | quiet; t1=$(now)
"$V/bin/pip" install -q "$SPEC" 2>&1 | quiet; t2=$(now)
echo "install torch: $(echo "$t1 - $t0" | bc) s; install morphoscope${EXTRAS:+[$EXTRAS]}: $(echo "$t2 - $t1" | bc) s"
SP=$("$V/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
echo "site-packages: $(du -sm "$SP" | cut -f1) MB; torch with nvidia/triton/cuda/sympy/networkx/mpmath:" \
     "$(cd "$SP" && du -smc torch nvidia triton cuda sympy networkx mpmath 2>/dev/null | tail -1 | cut -f1) MB;" \
     "distributions: $("$V/bin/pip" list 2>/dev/null | tail -n +3 | wc -l)"
OUT=$(mktemp -d); IMG=$("$V/bin/python" -c "from morphoscope.samples import BBBC039; print(sorted((BBBC039/'images').glob('*.tif'))[0])")
t3=$(now); HF_HUB_OFFLINE=1 "$V/bin/morphoscope" predict "$IMG" --out "$OUT/first" --device cpu >/dev/null 2>&1; t4=$(now)
echo "time to first result (morphoscope predict on one bundled image, new process): $(echo "$t4 - $t3" | bc) s;" \
     "load average $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -z "$EXTRAS" ]; then
  "$V/bin/morphoscope" serve 2>&1 | tail -1
  "$V/bin/morphoscope" tune configs/bbbc039_fpn_r18.yaml 2>&1 | tail -1
  "$V/bin/morphoscope" export nuclei --format onnx --out "$OUT/n.onnx" 2>&1 | tail -1
  "$V/bin/morphoscope" measure "$OUT"/first/*_labels.tif --out "$OUT/t.parquet" 2>&1 | tail -1
fi
rm -rf "$OUT"
