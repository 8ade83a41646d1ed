# Sourced by the tests that play the server's part on MQTT with openssl alone (agent_mqtt,
# hw_mqtt): a command certificate and compact JWS commands signed with it.

# make_command_cert CA_DIR: $WORK/cmd.key and $WORK/cmd.pem, the server's command key and
# certificate (CN iotpki-server: also its MQTT identity), issued by CA_DIR's operational CA
# (its key read with IOTPKI_PASSPHRASE).
make_command_cert() {
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$WORK/cmd.key" 2>/dev/null
  openssl req -new -key "$WORK/cmd.key" -subj "/O=Example Org/CN=iotpki-server" \
    -out "$WORK/cmd.csr"
  cat >"$WORK/cmd.ext" <<'EXT'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = 1.3.6.1.4.1.32473.2.1, clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EXT
  openssl x509 -req -in "$WORK/cmd.csr" -CA "$1/certs/operational.pem" \
    -CAkey "$1/keys/operational.key" -passin env:IOTPKI_PASSPHRASE -CAcreateserial \
    -days 1 -extfile "$WORK/cmd.ext" -out "$WORK/cmd.pem" 2>"$WORK/err" || {
    cat "$WORK/err" >&2
    exit 1
  }
}

b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
# sign JSON: the compact JWS (ES256, x5c) of the command JSON, with openssl alone.
sign() {
  local header payload sig r s
  header=$(printf '{"alg":"ES256","x5c":["%s"]}' \
    "$(openssl x509 -in "$WORK/cmd.pem" -outform DER | base64 -w0)" | b64url)
  payload=$(printf '%s' "$1" | b64url)
  printf '%s.%s' "$header" "$payload" | openssl dgst -sha256 -sign "$WORK/cmd.key" -out "$WORK/sig.der"
  r=$(openssl asn1parse -inform DER -in "$WORK/sig.der" | sed -n 's/.*INTEGER *:\([0-9A-F]*\)$/\1/p' | sed -n 1p)
  s=$(openssl asn1parse -inform DER -in "$WORK/sig.der" | sed -n 's/.*INTEGER *:\([0-9A-F]*\)$/\1/p' | sed -n 2p)
  sig=$(printf '%064s%064s' "$r" "$s" | tr ' ' 0 | xxd -r -p | b64url)
  printf '%s.%s.%s' "$header" "$payload" "$sig"
}
