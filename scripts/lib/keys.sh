# Ed25519 signing keys in the form of the `signing_key` variable,
# <kid>:<base64url seed>:<base64url public key>. The public key is carried so
# that no request derives it from the seed (crates/domain/src/token/keys.rs);
# openssl derives it here. Shared by scripts/deploy-to-k8s.sh and the
# measurement scripts (scripts/lib/serve.sh).
# shellcheck shell=bash

# b64url_bytes: base64url (padded or not) on stdin -> raw bytes on stdout.
b64url_bytes() {
  local text
  text=$(tr -d '=\n' | tr '_-' '/+')
  while ((${#text} % 4)); do text+='='; done
  base64 -d <<<"$text"
}

# bytes_b64url: raw bytes on stdin -> unpadded base64url on stdout.
bytes_b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }

# ed25519_public_of SEED_B64URL: prints the public key of a 32-byte seed.
ed25519_public_of() {
  # An Ed25519 private key in PKCS#8 DER is this 16-byte prefix and the seed.
  {
    printf '\x30\x2e\x02\x01\x00\x30\x05\x06\x03\x2b\x65\x70\x04\x22\x04\x20'
    b64url_bytes <<<"$1"
  } | openssl pkey -inform DER -pubout -outform DER | tail -c 32 | bytes_b64url
}

# new_signing_key KID: prints a fresh <kid>:<seed>:<public key>.
new_signing_key() {
  local seed
  seed=$(head -c 32 /dev/urandom | bytes_b64url)
  printf '%s:%s:%s\n' "$1" "$seed" "$(ed25519_public_of "$seed")"
}

# with_public_key VALUE: <kid>:<seed> gains its public key; a value that
# already carries one is printed as it is.
with_public_key() {
  local value=$1
  if [[ $value =~ ^[^:[:space:]]+:[A-Za-z0-9_-]{43}=?$ ]]; then
    value="$value:$(ed25519_public_of "${value#*:}")"
  fi
  printf '%s\n' "$value"
}
