"""The bundle verifier as a POSIX shell script: openssl, sha256sum and xmlsec1 only.

One text, two uses: it is written into every bundle as `verify.sh` for auditors without the
adapter (who should read it before running it), and `audit verify-bundle` runs the adapter's
own copy of it against an unpacked bundle, never the copy inside the bundle. Everything it
trusts comes from its arguments: the CA, the TSA's CA, the adapter's checkpoint certificate
and where the chain must start (the previous bundle's tip). Every name it reads from the
bundle is checked against a strict pattern before it reaches a command line.
"""

VERIFY_SH = r"""#!/bin/sh
# Checks a THADS evidence bundle with openssl, sha256sum and xmlsec1 only.
# Usage: sh verify.sh --ca CA.pem [--tsa-ca TSA-CA.pem] [--signer ADAPTER-CERT.pem]
#                     [--after SEQ:HASH] [--dir BUNDLE-DIR]
#   --ca      the trust anchors YOU hold (not a file from the bundle)
#   --tsa-ca  the CA of the timestamp authority: every checkpoint must then carry a token
#   --signer  the adapter's checkpoint certificate: checkpoints signed by any other fail
#   --after   the tip printed by the previous bundle's check (nothing: the chain's genesis)
# Last line: INTACT (exit 0) or FAILED: why (exit 1).
set -u
ca=""; tsa=""; signer=""; after="0:0000000000000000000000000000000000000000000000000000000000000000"
dir=$(dirname "$0")
fail() { echo "FAILED: $*"; exit 1; }
while [ $# -gt 0 ]; do
  case "$1" in
    --ca) ca=$2; shift 2 ;;
    --tsa-ca) tsa=$2; shift 2 ;;
    --signer) signer=$2; shift 2 ;;
    --after) after=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    *) fail "unknown argument $1 (see the first lines of this script)" ;;
  esac
done
[ -n "$ca" ] || fail "give --ca: the trust anchors you hold (never a file from the bundle)"
for f in "$ca" "$tsa" "$signer"; do
  [ -z "$f" ] || [ -r "$f" ] || fail "cannot read $f"
done
ca=$(cd "$(dirname "$ca")" && pwd)/$(basename "$ca")
[ -z "$tsa" ] || tsa=$(cd "$(dirname "$tsa")" && pwd)/$(basename "$tsa")
[ -z "$signer" ] || signer=$(cd "$(dirname "$signer")" && pwd)/$(basename "$signer")
echo "$after" | grep -qE '^[0-9]+:[0-9a-f]{64}$' || fail "--after must be SEQ:HASH"
cd "$dir" || fail "no bundle directory $dir"
tmp=$(mktemp -d) || fail "mktemp"
trap 'rm -rf "$tmp"' EXIT
hex='[0-9a-f]\{64\}'
after_seq=${after%%:*}; prev=${after#*:}

echo "1. packet bytes match their recorded SHA-256"
for f in SHA256SUMS entries.tsv signed-packets.txt; do [ -f "$f" ] || fail "$f missing"; done
grep -v "^$hex  packets/$hex\.xml\$" SHA256SUMS | grep -q . && fail "SHA256SUMS: unexpected line"
while read -r sum file; do
  [ "packets/$sum.xml" = "$file" ] || fail "$file is not named by its SHA-256"
done < SHA256SUMS
if [ -s SHA256SUMS ]; then
  sha256sum --quiet --strict -c SHA256SUMS || fail "a packet was changed"
fi

echo "2. the hash chain, from where YOU say it starts (--after)"
grep -v "^[0-9]\{1,18\} $hex $hex\$" entries.tsv | grep -q . && fail "entries.tsv: unexpected line"
[ -s entries.tsv ] || fail "the bundle has no entries"
expect=$((after_seq + 1))
while read -r seq hash p; do
  [ "$seq" -eq "$expect" ] || fail "entry $expect is missing (the next entry is $seq)"
  [ "$p" = "$prev" ] \
    || fail "entry $seq does not follow the previous entry (or the chain does not start at $after)"
  h=$( { printf '%s\n' "$prev"; cat "chain/$seq.json"; } | sha256sum | cut -d' ' -f1)
  [ "$h" = "$hash" ] || fail "entry $seq was modified"
  prev=$h; expect=$((seq + 1))
done < entries.tsv
last=$((expect - 1))
find chain -name '*.json' -exec grep -ho "\"content_sha256\":\"$hex\"" {} + 2>/dev/null \
  | cut -d'"' -f4 | sort -u > "$tmp/needed"
while read -r sum; do
  grep -q "^$sum " SHA256SUMS || fail "the packet $sum named by the chain is not in the bundle"
done < "$tmp/needed"

echo "3. checkpoints: signed by the adapter, chained, timestamped, matching the chain"
n=0; pver=""; pnum=""; phash=""; pseq=""; ptip=""; signed=0; v2=0
for cp in checkpoints/*/; do
  [ -d "$cp" ] || continue
  case "$cp" in checkpoints/[0-9][0-9][0-9][0-9][0-9][0-9]/) ;; *) fail "unexpected $cp" ;; esac
  n=$((n + 1))
  openssl verify -CAfile "$ca" "$cp/cert.pem" >/dev/null 2>&1 \
    || fail "$cp: signer not under your CA"
  if [ -n "$signer" ]; then
    openssl x509 -in "$cp/cert.pem" -outform DER -out "$tmp/a.der" 2>/dev/null \
      || fail "$cp: bad cert"
    openssl x509 -in "$signer" -outform DER -out "$tmp/b.der" || fail "bad --signer"
    cmp -s "$tmp/a.der" "$tmp/b.der" \
      || fail "$cp: not signed by the adapter's certificate (--signer)"
  fi
  openssl x509 -in "$cp/cert.pem" -pubkey -noout > "$tmp/pub.pem" || fail "$cp: bad cert"
  openssl dgst -sha256 -verify "$tmp/pub.pem" -signature "$cp/signature.bin" \
    "$cp/statement.txt" >/dev/null 2>&1 || fail "$cp: signature does not verify"
  st="$cp/statement.txt"
  val() { sed -n "s/^$1=//p" "$st"; }
  seq=$(val seq); tip=$(val tip)
  echo "$seq $tip" | grep -qE '^[0-9]{1,18} [0-9a-f]{64}$' || fail "$cp: bad seq or tip"
  grep -q "^$seq $tip " entries.tsv || fail "$cp: the signed tip is not entry $seq of the chain"
  case "$(head -n 1 "$st")" in
    "thads-adapter evidence checkpoint v1")
      [ "$v2" -eq 0 ] || fail "$cp: a v1 checkpoint after v2 ones"
      echo "   note: $cp is v1 (made before the checkpoint chain): it signs its tip only" ;;
    "thads-adapter evidence checkpoint v2")
      v2=1; num=$(val number); first=$(val first); start=$(val start); pv=$(val prev)
      echo "$num $first $start $pv" \
        | grep -qE '^[0-9]{1,18} [0-9]{1,18} [0-9a-f]{64} [0-9a-f]{64}$' \
        || fail "$cp: unreadable statement"
      [ "$pver" != v2 ] || [ "$num" = $((pnum + 1)) ] \
        || fail "$cp: checkpoint $((pnum + 1)) is missing before checkpoint $num"
      [ -z "$pver" ] || [ "$pv" = "$phash" ] \
        || fail "$cp: the chain of checkpoints is broken (the checkpoint before it was replaced)"
      [ -z "$pver" ] || { [ "$first" = $((pseq + 1)) ] && [ "$start" = "$ptip" ]; } \
        || fail "$cp: its range does not start after the previous checkpoint"
      grep -q "^$first $hex $start\$" entries.tsv \
        || fail "$cp: it signs a chain starting at entry $first from $start, not this bundle's" ;;
    *) fail "$cp: unknown statement version" ;;
  esac
  pver=v$(head -n 1 "$st" | sed 's/.* v//'); pnum=$(val number)
  phash=$(sha256sum < "$st" | cut -d' ' -f1); pseq=$seq; ptip=$tip
  [ "$seq" -gt "$signed" ] && signed=$seq
  if [ -n "$tsa" ]; then
    [ -f "$cp/token.tsr" ] || fail "$cp: no timestamp token (stamping was expected: --tsa-ca)"
    openssl ts -verify -data "$st" -in "$cp/token.tsr" -token_in -CAfile "$tsa" \
      >/dev/null 2>&1 || fail "$cp: timestamp token does not verify"
  elif [ -f "$cp/token.tsr" ]; then
    echo "   note: $cp: timestamp not checked (no --tsa-ca)"
  fi
done
[ "$n" -gt 0 ] || fail "no checkpoint signs these entries"
[ "$signed" -lt "$last" ] \
  && echo "   note: entries $((signed + 1))..$last follow the last checkpoint: not yet signed"

echo "4. packet signatures (XML-DSig) with xmlsec1, against YOUR CA"
grep -v "^packets/$hex\.xml [A-Za-z]\{1,40\}\$" signed-packets.txt | grep -q . \
  && fail "signed-packets.txt: unexpected line"
while read -r file root; do
  grep -q "  $file\$" SHA256SUMS || fail "$file is not in SHA256SUMS"
  if [ "$root" = "edXML" ]; then
    xmlsec1 --verify --trusted-pem "$ca" "$file" >/dev/null 2>&1 \
      || fail "$file: signature does not verify"
  else
    xmlsec1 --verify --id-attr:Id "urn:thads-adapter:exchange:1:$root" \
      --trusted-pem "$ca" "$file" >/dev/null 2>&1 || fail "$file: signature does not verify"
  fi
done < signed-packets.txt
echo "tip: $last:$prev (pass it as --after to check the next bundle)"
echo "INTACT"
"""
