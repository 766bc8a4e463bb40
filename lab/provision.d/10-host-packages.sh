# Debian packages the lab needs on the host: the Docker engine, debootstrap for
# base images, iproute2/iptables for network namespaces.
need=()
for pkg in docker.io debootstrap iproute2 iptables; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
done
if (( ${#need[@]} )); then
  progress "  apt-get install ${need[*]}"
  run_logged apt-update apt-get update -q
  DEBIAN_FRONTEND=noninteractive run_logged apt-install apt-get install -y -q --no-install-recommends "${need[@]}"
fi
