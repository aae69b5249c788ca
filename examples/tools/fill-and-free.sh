#!/usr/bin/env bash
# Fill-and-free cycles against one `weir serve` on a 64 MiB tmpfs (mounted here; needs root)
# with a 16 MiB free-space floor: each cycle another writer takes the free space down to
# 8 MiB, a produce must be refused with "disk full", the space is freed, and produces must
# resume without a restart. Prints one line of counts. WEIR: the weir binary (default: weir).
set -u
weir=${WEIR:-weir}
cycles=${1:-20}
dir=$(mktemp -d)
mount -t tmpfs -o size=64m tmpfs "$dir" || { echo "cannot mount a tmpfs (needs root)"; exit 1; }
"$weir" serve --data-dir "$dir/data" --listen 127.0.0.1:0 --min-free-space 16MiB >"$dir.out" 2>"$dir.err" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; umount -l "$dir"; rm -rf "$dir" "$dir.out" "$dir.err"' EXIT
for _ in $(seq 100); do grep -q listening "$dir.out" 2>/dev/null && break; sleep 0.1; done
export WEIR_SERVER=$(sed -n 's/^weir listening on //p' "$dir.out")
"$weir" topic create t >/dev/null
batch=$(mktemp)
python3 -c "print('\n'.join('x'*200 for _ in range(200)))" >"$batch"
full=0; resumed=0; hangs=0
for _ in $(seq "$cycles"); do
  free=$(df -B1 --output=avail "$dir" | tail -1)
  head -c $((free - (8 << 20))) /dev/zero >"$dir/ballast"
  sleep 0.2 # weir reads the free space at most every 100 ms
  out=$(timeout 10 "$weir" produce t --file "$batch" 2>&1); rc=$?
  [ $rc -eq 124 ] && hangs=$((hangs + 1))
  echo "$out" | grep -q "disk full" && full=$((full + 1))
  rm -f "$dir/ballast"
  for _ in $(seq 50); do
    timeout 10 "$weir" produce t --file "$batch" >/dev/null 2>&1 && { resumed=$((resumed + 1)); break; }
    sleep 0.1
  done
done
rm -f "$batch"
alive=$(kill -0 $pid 2>/dev/null && echo yes || echo no)
panics=$(grep -c panicked "$dir.err")
echo "cycles $cycles: refused with disk full $full, resumed without restart $resumed, hangs $hangs, panics $panics, server alive $alive"
