# A wheelhouse for image builds without network: every third-party wheel that
# uv.lock pins (all workspace packages, Linux x86_64 CPython 3.11, checked
# against the lock's hashes) plus the build backend (hatchling) that pip needs
# to build our own packages from source inside an image. Keyed by uv.lock's
# hash and the hatchling pin, so it is rebuilt only when either changes.
# Images reach it over HTTP on the docker bridge (mcp_tailnet_lab.images).
lock_hash="$(sha256sum "$REPO_DIR/uv.lock" | cut -c1-16)"
wh="$MCP_TAILNET_CACHE/wheelhouse/lock-$lock_hash-hatchling-$HATCHLING_VERSION"
if [[ -f "$wh/.complete" ]]; then
  progress "  wheelhouse up to date ($(find "$wh" -name '*.whl' | wc -l) wheels, $wh)"
  return 0
fi
python3 -m pip --version >/dev/null 2>&1 || { progress "  python3 -m pip is missing (needed to download wheels)"; return 1; }
tmp="$wh.partial"

# newest_wheelhouses: complete wheelhouse directories, newest first; none is not an error
# (a first run has none, and `ls` of an unmatched glob under pipefail would end the step).
newest_wheelhouses() {
  find "$MCP_TAILNET_CACHE/wheelhouse" -mindepth 1 -maxdepth 1 -type d -name 'lock-*' \
    ! -name '*.partial' -exec test -f '{}/.complete' ';' -printf '%T@ %p\n' \
    | sort -rn | cut -d' ' -f2-
}
rm -rf "$tmp"; mkdir -p "$tmp"
# Reuse the wheels of the newest previous wheelhouse: pip skips files already there.
# On a first run there is none: newest_wheelhouses prints nothing and succeeds.
prev="$(newest_wheelhouses | sed -n 1p)"
if [[ -n "$prev" ]]; then cp -l "$prev"/*.whl "$tmp"/ 2>/dev/null || true; fi
# The images' interpreter: Debian bookworm's CPython 3.11 on glibc 2.36, x86_64.
# pip does not expand a manylinux tag to older glibc versions, so list them.
target=(--only-binary=:all: --python-version 3.11 --implementation cp
        --abi cp311 --abi abi3 --abi none --platform any --platform linux_x86_64
        --platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64)
for m in $(seq 36 -1 5); do target+=(--platform "manylinux_2_${m}_x86_64"); done
uv export --frozen --all-packages --no-emit-workspace --no-dev --no-header \
  --project "$REPO_DIR" -o "$tmp/requirements.txt" >/dev/null || return 1
progress "  downloading the locked wheels into $wh"
run_logged wheelhouse-locked python3 -m pip download --disable-pip-version-check --require-hashes \
  --no-deps "${target[@]}" -r "$tmp/requirements.txt" -d "$tmp" || return 1
# Keep only what this lock names: stale hard links from the previous wheelhouse go.
python3 - "$tmp" <<'PY' || return 1
import re, sys
from pathlib import Path
canon = lambda n: re.sub(r"[-_.]+", "-", n).lower()
d = Path(sys.argv[1])
want = {canon(m[1]): m[2] for m in re.finditer(r"^([A-Za-z0-9_.-]+)==(\S+)", (d / "requirements.txt").read_text(), re.M)}
for whl in d.glob("*.whl"):
    name, version = whl.name.split("-")[:2]
    if want.get(canon(name)) != version:
        whl.unlink()
PY
# The build backend and its dependencies (whatever that hatchling requires).
run_logged wheelhouse-backend python3 -m pip download --disable-pip-version-check \
  "${target[@]}" "hatchling==$HATCHLING_VERSION" -d "$tmp" || return 1
rm -rf "$wh"; mv "$tmp" "$wh"; touch "$wh/.complete"
ln -sfn "$(basename "$wh")" "$MCP_TAILNET_CACHE/wheelhouse/current"
# Keep the three newest wheelhouses (other checkouts may use an older lock).
newest_wheelhouses | tail -n +4 | xargs -r rm -rf
progress "  wheelhouse ready: $(find "$wh" -name '*.whl' | wc -l) wheels, $(du -sh "$wh" | cut -f1)"
