# Installing what a suite needs from Debian (sourced).

# install_missing COMMAND[:PACKAGE]...: installs the package of each command
# that is not on PATH (the package is named like the command unless given).
install_missing() {
  local item missing=()
  for item in "$@"; do
    command -v "${item%%:*}" >/dev/null || missing+=("${item#*:}")
  done
  [ "${#missing[@]}" -gt 0 ] || return 0
  echo "installing ${missing[*]} from Debian"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
