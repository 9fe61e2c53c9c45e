# Sourced by scripts/run.sh: export SECRET_KEY for this site. One is made on the first run and kept
# in var/secret_key (readable by this user only), so sessions survive restarts and no two sites
# share a key. A SECRET_KEY already in the environment wins.
#   ICON2_VAR_DIR=/some/folder source scripts/site_secret.sh   # keep it elsewhere (tests)
if [[ -z "${SECRET_KEY:-}" ]]; then
  _icon2_key_file="${ICON2_VAR_DIR:-var}/secret_key"
  if [[ ! -s "$_icon2_key_file" ]]; then
    mkdir -p "$(dirname "$_icon2_key_file")"
    (umask 077 && head -c 64 /dev/urandom | base64 | tr -d '\n/+=' >"$_icon2_key_file")
  fi
  SECRET_KEY="$(cat "$_icon2_key_file")"
  export SECRET_KEY
  unset _icon2_key_file
fi
