# Test-script helpers (sourced): counters and check lines ending in "N passed, N failed".
pass=0 fail=0
ok()  { pass=$((pass + 1)); echo "ok   - $*"; }
bad() { fail=$((fail + 1)); echo "FAIL - $*"; }
# check DESCRIPTION COMMAND...: its output is shown only when it fails.
check() {
  local what=$1 out; shift
  if out=$("$@" 2>&1); then ok "$what"; else bad "$what"; [[ -z $out ]] || sed 's/^/    /' <<<"$out" | tail -n 20; fi
}
# eventually SECONDS COMMAND...: retry every 0.1 s; on timeout run it once more, shown.
eventually() {
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do ((SECONDS < deadline)) || { "$@"; return 1; }; sleep 0.1; done
}
