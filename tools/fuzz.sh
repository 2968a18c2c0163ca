#!/usr/bin/env bash
# Fuzzes the SAML validator with cargo-fuzz (libFuzzer): every target in turn, one process
# at a time, for SECONDS_PER_TARGET seconds each (default 60). Not part of CI.
#
#   tools/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Seeds tools/fuzz/corpus/<target>/ from ../shared/interop (override with INTEROP_DIR) and,
# when xmlsec1 is installed, with responses signed by tests/fixtures/keys/rsa2048 that the
# validate_response target accepts. Prints per target the executions and whether it
# crashed; exits non-zero if any did. Crashing inputs land in tools/fuzz/artifacts/<target>/
# (minimise with `cargo fuzz tmin`, keep under tools/fuzz/regressions/<target>/).
#
# cargo-fuzz passes nightly -Z flags to rustc; RUSTC_BOOTSTRAP=1 makes the stable toolchain
# accept them, so no nightly is needed. FUZZ_SANITIZER=none|address (default address);
# FUZZ_ARGS adds libFuzzer flags (e.g. FUZZ_ARGS="-max_len=4096").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$PWD"
fuzz_dir="$root/tools/fuzz"

seconds="${1:-60}"
shift || true
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    targets=(validate_response canonicalize parse_metadata)
fi
case "$seconds" in
    '' | *[!0-9]*) echo "usage: tools/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]" >&2; exit 2 ;;
esac

export RUSTC_BOOTSTRAP=1
build_flags=(--release --debug-assertions --sanitizer "${FUZZ_SANITIZER:-address}")
read -r -a extra_args <<<"${FUZZ_ARGS:-}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install --locked cargo-fuzz
fi

# --- Seed corpora -------------------------------------------------------------------------
interop="${INTEROP_DIR:-$root/../shared/interop}"
corpus="$fuzz_dir/corpus"
mkdir -p "$corpus/validate_response" "$corpus/canonicalize" "$corpus/parse_metadata"

# Writes the XML of one interop file (after decoding) to the given corpus directories.
seed() {
    local file="$1" encoding="$2"
    shift 2
    local source="$interop/$file" name="interop-${file//\//_}" xml
    [ -f "$source" ] || return 0
    case "$encoding" in
        xml | metadata) xml="$source" ;;
        base64)
            xml="$(mktemp)"
            if ! base64 -d -i "$source" >"$xml" 2>/dev/null; then
                echo "fuzz.sh: cannot decode $file, skipped" >&2
                rm -f "$xml"
                return 0
            fi
            # The form-value encoding too, for the decode_post_binding path.
            if [ "$1" = validate_response ]; then cp "$source" "$corpus/validate_response/$name.b64"; fi
            ;;
        *) return 0 ;; # deflate-base64 (not HTTP-POST) and PEM key files
    esac
    local target
    for target in "$@"; do cp "$xml" "$corpus/$target/$name.xml"; done
    [ "$xml" = "$source" ] || rm -f "$xml"
}

seeded=0
if [ -f "$interop/manifest.toml" ]; then
    # "file encoding-or-kind section" per [[case]] / [[keyfile]] of the manifest.
    while read -r section file encoding; do
        case "$section:$encoding" in
            case:xml | case:base64) seed "$file" "$encoding" validate_response canonicalize ;;
            keyfile:metadata) seed "$file" metadata parse_metadata canonicalize ;;
            *) continue ;;
        esac
        seeded=$((seeded + 1))
    done < <(awk '
        function flush() { if (section != "" && file != "") print section, file, (enc != "" ? enc : "-") }
        /^\[\[case\]\]/    { flush(); section = "case"; file = ""; enc = ""; next }
        /^\[\[keyfile\]\]/ { flush(); section = "keyfile"; file = ""; enc = ""; next }
        /^\[/              { flush(); section = ""; next }
        /^file *=/         { v = $0; sub(/^[^"]*"/, "", v); sub(/".*$/, "", v); file = v }
        /^(encoding|kind) *=/ { v = $0; sub(/^[^"]*"/, "", v); sub(/".*$/, "", v); enc = v }
        END { flush() }
    ' "$interop/manifest.toml")
    echo "fuzz.sh: seeded $seeded interop files from $interop"
else
    echo "fuzz.sh: no $interop/manifest.toml; interop seeds skipped" >&2
fi

# Metadata for the key the validate_response target trusts.
keys="$root/tests/fixtures/keys"
certificate_body="$(grep -v -- '-----' "$keys/rsa2048.cert.pem" | tr -d '\n')"
metadata_seed() {
    cat <<XML
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://idp.example.com/metadata"><md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:KeyDescriptor use="signing"><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:X509Data><ds:X509Certificate>$certificate_body</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor><md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.example.com/sso"/><md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://idp.example.com/sso/post"/></md:IDPSSODescriptor></md:EntityDescriptor>
XML
}
metadata_seed >"$corpus/parse_metadata/generated-rsa2048.xml"
{
    echo '<md:EntitiesDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata">'
    metadata_seed
    metadata_seed | sed 's|https://idp.example.com/metadata|https://idp2.example.com/metadata|'
    echo '</md:EntitiesDescriptor>'
} >"$corpus/parse_metadata/generated-entities.xml"

# Responses signed by rsa2048 in every position, as tests/attacks.rs builds them, so that
# the fuzzer starts past the signature check and reaches the business rules.
signature_template() {
    printf '%s' '<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo>' \
        '<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>' \
        '<ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>' \
        "<ds:Reference URI=\"$1\"><ds:Transforms>" \
        '<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>' \
        '<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>' \
        '</ds:Transforms><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>' \
        '<ds:DigestValue/></ds:Reference></ds:SignedInfo><ds:SignatureValue/>' \
        '<ds:KeyInfo><ds:X509Data/></ds:KeyInfo></ds:Signature>'
}
response_template() {
    local response_signature="" assertion_signature=""
    [ "$1" = assertion ] || response_signature="$(signature_template '#_response-1')"
    [ "$1" = response ] || assertion_signature="$(signature_template '#_assertion-1')"
    printf '%s' '<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ' \
        'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_response-1" Version="2.0" ' \
        'IssueInstant="2026-06-01T11:59:00Z" Destination="https://sp.example.com/acs" InResponseTo="_request-1">' \
        '<saml:Issuer>https://idp.example.com/metadata</saml:Issuer>' "$response_signature" \
        '<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>' \
        '<saml:Assertion ID="_assertion-1" Version="2.0" IssueInstant="2026-06-01T11:59:00Z">' \
        '<saml:Issuer>https://idp.example.com/metadata</saml:Issuer>' "$assertion_signature" \
        '<saml:Subject><saml:NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress">alice@example.com</saml:NameID>' \
        '<saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer">' \
        '<saml:SubjectConfirmationData Recipient="https://sp.example.com/acs" NotOnOrAfter="2026-06-01T12:05:00Z" InResponseTo="_request-1"/>' \
        '</saml:SubjectConfirmation></saml:Subject>' \
        '<saml:Conditions NotBefore="2026-06-01T11:55:00Z" NotOnOrAfter="2026-06-01T12:05:00Z">' \
        '<saml:AudienceRestriction><saml:Audience>https://sp.example.com/metadata</saml:Audience></saml:AudienceRestriction>' \
        '</saml:Conditions>' \
        '<saml:AuthnStatement AuthnInstant="2026-06-01T11:59:00Z" SessionIndex="_session-1">' \
        '<saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:Password' \
        '</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>' \
        '<saml:AttributeStatement><saml:Attribute Name="role"><saml:AttributeValue>Developer</saml:AttributeValue>' \
        '</saml:Attribute></saml:AttributeStatement></saml:Assertion></samlp:Response>'
}
if command -v xmlsec1 >/dev/null 2>&1; then
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    for position in response assertion both; do
        response_template "$position" >"$work/0.xml"
        xpaths=()
        [ "$position" = response ] || xpaths+=("/*[local-name()='Response']/*[local-name()='Assertion']/*[local-name()='Signature']")
        [ "$position" = assertion ] || xpaths+=("/*[local-name()='Response']/*[local-name()='Signature']")
        step=0
        for xpath in "${xpaths[@]}"; do
            if ! xmlsec1 --sign --privkey-pem "$keys/rsa2048.key.pem,$keys/rsa2048.cert.pem" \
                --id-attr:ID urn:oasis:names:tc:SAML:2.0:protocol:Response \
                --id-attr:ID urn:oasis:names:tc:SAML:2.0:assertion:Assertion \
                --node-xpath "$xpath" --output "$work/$((step + 1)).xml" "$work/$step.xml" \
                2>"$work/xmlsec1.err"; then
                echo "fuzz.sh: xmlsec1 could not sign ($position); seed skipped" >&2
                cat "$work/xmlsec1.err" >&2
                continue 2
            fi
            step=$((step + 1))
        done
        cp "$work/$step.xml" "$corpus/validate_response/generated-signed-$position.xml"
        cp "$work/$step.xml" "$corpus/canonicalize/generated-signed-$position.xml"
    done
    echo "fuzz.sh: seeded responses signed with rsa2048 by xmlsec1"
else
    echo "fuzz.sh: xmlsec1 not installed; no signed seeds (apt-get install xmlsec1)" >&2
fi

# --- Build once, then fuzz each target ----------------------------------------------------
cd "$fuzz_dir"
echo "fuzz.sh: building fuzz targets (${build_flags[*]})"
mkdir -p "$fuzz_dir/target"
cargo fuzz build "${build_flags[@]}" >"$fuzz_dir/target/build.log" 2>&1 || {
    tail -40 "$fuzz_dir/target/build.log" >&2
    exit 1
}

summary=()
failed=0
for target in "${targets[@]}"; do
    mkdir -p "artifacts/$target" "corpus/$target"
    log="artifacts/$target/fuzz.log"
    echo "fuzz.sh: fuzzing $target for ${seconds}s (log: tools/fuzz/$log)"
    status=0
    cargo fuzz run "${build_flags[@]}" "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -dict="$fuzz_dir/xml.dict" -timeout=10 \
        -print_final_stats=1 "${extra_args[@]}" >"$log" 2>&1 || status=$?
    # libFuzzer's last words: "Done N runs in S second(s)" when it ran out of time, else the
    # final stats it prints on a crash.
    runs="$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)"
    elapsed="$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\2/p' "$log" | tail -1)"
    if [ -z "$runs" ]; then
        runs="$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -1)"
        elapsed="$(sed -n 's/^stat::average_exec_per_sec: *\([0-9]*\).*/\1/p' "$log" | tail -1)"
        elapsed="${elapsed:+~$(( runs / (elapsed > 0 ? elapsed : 1) ))}"
    fi
    corpus_size="$(find "corpus/$target" -type f | wc -l)"
    if [ "$status" -eq 0 ] && ! grep -q -e '^==[0-9]*== *ERROR' -e 'Test unit written to' "$log"; then
        result="ok"
    elif ! grep -q '^INFO: Seed:' "$log"; then
        # `cargo fuzz run` rebuilds when src/ changed since the build above; that can fail.
        result="BUILD FAILED (exit $status)"
        failed=1
        echo "---- $target: last lines of $log" >&2
        tail -40 "$log" >&2
    else
        result="CRASHED (exit $status)"
        failed=1
        echo "---- $target: last lines of $log" >&2
        tail -60 "$log" >&2
        grep -h 'Test unit written to' "$log" >&2 || true
    fi
    rate="-"
    if [ -n "$runs" ] && [ -n "$elapsed" ] && [ "${elapsed#\~}" -gt 0 ]; then
        rate=$(( runs / ${elapsed#\~} ))
    fi
    summary+=("$(printf '%-18s %8ss %12s execs %8s execs/s  corpus %5s  %s' \
        "$target" "${elapsed:-?}" "${runs:-?}" "$rate" "$corpus_size" "$result")")
done

echo
echo "fuzz.sh: summary (${seconds}s per target)"
printf '  %s\n' "${summary[@]}"
exit "$failed"
