# Local stand-ins for the upstream images our Dockerfiles name, tagged with the
# upstream tags so those Dockerfiles build unchanged with no registry:
#   $PYTHON_BASE_IMAGE  debootstrapped Debian + python3/python3-venv, with the
#                       official python image's conventions (python3 and python
#                       in /usr/local/bin, CMD python3, `python -m venv` works);
#   $TAILSCALE_IMAGE    the Go-built tailscale/tailscaled/containerboot at the
#                       official paths, containerboot as entrypoint (lab/images/tailscale);
#   $HEADSCALE_IMAGE    the Go-built headscale at ko's /ko-app path (lab/images/headscale).
# Each image carries a label with the key of its inputs; it is skipped when the
# tag already carries that key. Root filesystems are cached as tarballs keyed
# by suite and package list.
LABEL_KEY=org.mcp-tailnet.lab.standin
rootfs_cache="$MCP_TAILNET_CACHE/rootfs"
mkdir -p "$rootfs_cache"

# rootfs_tar NAME PKG,PKG: path of a cached minbase rootfs tarball; debootstraps it when absent.
rootfs_tar() {
  local name="$1" include="$2"
  local key; key="$(printf '%s minbase %s recipe=1' "$DEBIAN_SUITE" "$include" | sha256sum | cut -c1-12)"
  local tar="$rootfs_cache/$DEBIAN_SUITE-$name-$key.tar"
  if [[ -f "$tar" ]]; then echo "$tar"; return 0; fi
  local dir="$rootfs_cache/.build-$name-$$"
  rm -rf "$dir"
  progress "  debootstrap --variant=minbase --include=$include $DEBIAN_SUITE (about a minute)"
  run_logged "debootstrap-$name" debootstrap --variant=minbase --include="$include" \
    "$DEBIAN_SUITE" "$dir" http://deb.debian.org/debian || { rm -rf "$dir"; return 1; }
  # Slim like the official images: no package lists, caches, docs (copyright kept).
  rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir"/var/cache/apt/archives/*.deb \
         "$dir"/usr/share/man/* "$dir"/usr/share/info/* "$dir"/var/log/*.log "$dir"/tmp/*
  find "$dir/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null
  : >"$dir/etc/hostname"; rm -f "$dir/etc/resolv.conf"
  if [[ "$name" == python ]]; then
    # The official image's python lives in /usr/local/bin; point there at Debian's.
    ln -sfn /usr/bin/python3 "$dir/usr/local/bin/python3"
    ln -sfn python3 "$dir/usr/local/bin/python"
  fi
  tar -C "$dir" --numeric-owner -cf "$tar.partial" . || { rm -rf "$dir"; return 1; }
  mv "$tar.partial" "$tar"; rm -rf "$dir"
  echo "$tar"
}

# has_standin TAG KEY: true when TAG exists with label KEY.
has_standin() {
  [[ "$(docker image inspect -f "{{index .Config.Labels \"$LABEL_KEY\"}}" "$1" 2>/dev/null)" == "$2" ]]
}

# --- python base -------------------------------------------------------------
py_include="python3,python3-venv,ca-certificates"
py_tar="$(rootfs_tar python "$py_include")" || return 1
py_key="$PYTHON_BASE_IMAGE $(basename "$py_tar") recipe=1"
if has_standin "$PYTHON_BASE_IMAGE" "$py_key"; then
  progress "  $PYTHON_BASE_IMAGE: up to date"
else
  # Debian's CPython version (e.g. 3.11.2), as the official image's PYTHON_VERSION.
  py_version="$(tar -xOf "$py_tar" ./var/lib/dpkg/status \
    | awk '/^Package: python3.11-minimal$/ {f=1} f && /^Version:/ {sub(/-.*/, "", $2); print $2; exit}')"
  progress "  docker import $PYTHON_BASE_IMAGE (CPython $py_version)"
  docker import \
    --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change "ENV PYTHON_VERSION=$py_version" \
    --change 'CMD ["python3"]' \
    --change "LABEL $LABEL_KEY=\"$py_key\"" \
    "$py_tar" "$PYTHON_BASE_IMAGE" >/dev/null || return 1
  out="$(docker run --rm "$PYTHON_BASE_IMAGE" sh -c \
    'python -c "import sys, ssl; print(sys.version.split()[0])" && python -m venv /tmp/v && /tmp/v/bin/pip --version' 2>&1)" \
    || { progress "  $PYTHON_BASE_IMAGE does not work: $out"; return 1; }
  progress "  $PYTHON_BASE_IMAGE: python $(head -n1 <<<"$out"), venv ok"
fi

# --- tailscale and headscale on a small Debian with network tools -------------
net_include="ca-certificates,iptables,iproute2,iputils-ping"
net_tar="$(rootfs_tar net "$net_include")" || return 1
net_image="mcp-tailnet-lab/debian-net:$(basename "$net_tar" .tar)"
if ! docker image inspect "$net_image" >/dev/null 2>&1; then
  docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$net_tar" "$net_image" >/dev/null || return 1
fi

# standin_build TAG COMPONENT VERSION LAB_DIR BINARY...: build lab/images/DIR with the binaries as context.
standin_build() {
  local tag="$1" component="$2" version="$3" recipe="$4"; shift 4
  local bins_dir; bins_dir="$(bin_dir "$component" "$version")"
  if ! have_bins "$bins_dir" "$@"; then
    progress "  $component $version binaries missing in $bins_dir: building them"
    local step; step="$(ls "$LAB_DIR"/provision.d/4?-"$component".sh)"
    ( source "$step" ) || return 1
  fi
  local sums; sums="$(cd "$bins_dir" && sha256sum "$@" "$LAB_DIR/images/$recipe/Dockerfile" | sha256sum | cut -c1-16)"
  local key="$tag $component-$version $(basename "$net_tar") $sums"
  if has_standin "$tag" "$key"; then progress "  $tag: up to date"; return 0; fi
  local ctx; ctx="$(mktemp -d)"
  cp "$LAB_DIR/images/$recipe/Dockerfile" "$ctx/"
  local b; for b in "$@"; do cp "$bins_dir/$b" "$ctx/"; done
  progress "  docker build $tag (lab/images/$recipe)"
  run_logged "image-$recipe" docker build --build-arg "BASE=$net_image" \
    --label "$LABEL_KEY=$key" \
    --label "org.opencontainers.image.version=$version" \
    --label "org.opencontainers.image.description=lab stand-in for $tag built from the Go module proxy" \
    -t "$tag" "$ctx" || { rm -rf "$ctx"; return 1; }
  rm -rf "$ctx"
  # The entrypoint binary answers inside the image (tailscale's CLI for the client image).
  local check=(--entrypoint "/usr/local/bin/tailscale" "$tag" version)
  [[ "$component" == headscale ]] && check=("$tag" version)
  local out; out="$(docker run --rm "${check[@]}" 2>&1)" || { progress "  $tag does not run: $out"; return 1; }
  progress "  $tag: $(head -n1 <<<"$out")"
}
standin_build "$TAILSCALE_IMAGE" tailscale "$TAILSCALE_VERSION" tailscale tailscale tailscaled containerboot || return 1
standin_build "$HEADSCALE_IMAGE" headscale "$HEADSCALE_VERSION" headscale headscale || return 1
