# Throw-away certificates for the shell suites (sourced): a CA and leaves
# for 127.0.0.1, ECDSA P-256, valid 2 days. Needs openssl.

# make_ca DIR: DIR/ca.pem and DIR/ca.key.
make_ca() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -keyout "$1/ca.key" -out "$1/ca.pem" -subj /CN=vault-redirector-throwaway-ca 2>/dev/null
}

# make_leaf DIR NAME: DIR/NAME.pem and DIR/NAME.key for 127.0.0.1 and
# localhost, signed by DIR's CA; each call a new key and serial.
make_leaf() {
  local d=$1 name=$2
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$d/$name.key" -out "$d/$name.csr" -subj /CN=127.0.0.1 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n' >"$d/$name.ext"
  openssl x509 -req -in "$d/$name.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
    -days 2 -out "$d/$name.pem" -extfile "$d/$name.ext" 2>/dev/null
  rm -f "$d/$name.csr" "$d/$name.ext"
}
