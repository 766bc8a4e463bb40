# Debian's nginx and wrk for bench/sidecar_bench.py, pinned to exact Debian package
# versions (NGINX_DEB_VERSION, WRK_DEB_VERSION in lab/versions.env): nginx is the C
# reverse proxy the gateway is measured against, wrk the native closed-loop load
# generator (the Python SDK client costs more CPU per call than the gateway it measures).
# Packages are machine state, not cache: a warm run is two dpkg-query calls.
# nginx is never started as a service: the bench runs its own nginx with its own config
# on loopback inside the bench's namespace. During the install a policy-rc.d that
# refuses every service start is in place (the machine's own, or ours for the duration).

# The installed version of a package, or nothing; never fails (it is read inside $(...)).
deb_version() {
  { dpkg-query -W -f='${db:Status-Status} ${Version}' "$1" 2>/dev/null || true; } | awk '$1 == "installed" {print $2}'
}

want=("nginx=$NGINX_DEB_VERSION" "nginx-common=$NGINX_DEB_VERSION" "wrk=$WRK_DEB_VERSION")
need=()
for spec in "${want[@]}"; do
  [[ "$(deb_version "${spec%%=*}")" == "${spec#*=}" ]] || need+=("$spec")
done

if (( ${#need[@]} )); then
  progress "  apt-get install ${need[*]}"
  own_policy=""
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    own_policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\n# lab/provision.d/15-bench-tools.sh: no service starts while it installs nginx\nexit 101\n' \
      >"$own_policy"
    chmod 0755 "$own_policy"
  fi
  rc=0
  DEBIAN_FRONTEND=noninteractive run_logged apt-bench-tools \
    apt-get install -y -q --no-install-recommends --allow-downgrades "${need[@]}" || rc=$?
  if (( rc != 0 )); then  # the pinned version may be newer than the package lists: refresh once
    rc=0
    run_logged apt-update apt-get update -q || rc=$?
    if (( rc == 0 )); then
      DEBIAN_FRONTEND=noninteractive run_logged apt-bench-tools \
        apt-get install -y -q --no-install-recommends --allow-downgrades "${need[@]}" || rc=$?
    fi
  fi
  if [[ -n "$own_policy" ]]; then rm -f "$own_policy"; fi
  if (( rc != 0 )); then
    progress "  could not install ${need[*]} (NGINX_DEB_VERSION / WRK_DEB_VERSION in lab/versions.env);"
    progress "  apt-cache policy shows which versions the archive offers: $(apt-cache policy nginx wrk 2>&1 \
      | awk '/Candidate/ {printf "%s ", $2}')"
    return 1
  fi
fi

for spec in "${want[@]}"; do
  got="$(deb_version "${spec%%=*}")"
  if [[ "$got" != "${spec#*=}" ]]; then
    progress "  ${spec%%=*}: installed '${got:-nothing}', pinned ${spec#*=} (lab/versions.env)"
    return 1
  fi
done
# Installed must also mean runnable: each binary's own version line.
nginx_says="$(/usr/sbin/nginx -v 2>&1)" || { progress "  nginx does not run: $nginx_says"; return 1; }
[[ "$nginx_says" == "nginx version: nginx/${NGINX_DEB_VERSION%%-*}" ]] \
  || { progress "  nginx reports '$nginx_says', pinned ${NGINX_DEB_VERSION%%-*}"; return 1; }
wrk_says="$(/usr/bin/wrk -v 2>&1 | head -n1)" || true
[[ "$wrk_says" == "wrk debian/$WRK_DEB_VERSION "* ]] \
  || { progress "  wrk reports '$wrk_says', pinned debian/$WRK_DEB_VERSION"; return 1; }
# A service the package may have started despite policy-rc.d (no init system here runs it):
# the package's own pid file names it; the bench's nginx uses its own pid file.
if [[ -s /run/nginx.pid ]] && kill -0 "$(cat /run/nginx.pid)" 2>/dev/null; then
  progress "  stopping the nginx service the package started"
  /usr/sbin/nginx -s quit || return 1
fi
progress "  nginx $NGINX_DEB_VERSION, wrk $WRK_DEB_VERSION"
