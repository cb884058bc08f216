#!/bin/sh
# pjdfstest.sh LABEL BASE ITEM... runs pjdfstest (copied into the guest at /extra/pjdfstest, from
# ../shared/pjdfstest: a static pjdfstest binary and its tests/ tree) in a fresh directory under
# BASE, for each ITEM: a tests/ directory (chown) or one file of one (chown/05.t).
# Output, every line prefixed with the LABEL after its key:
#   PJDT LABEL dir/NN.t pass fail todo skip plan rc secs    one per file
#   NOK LABEL dir/NN.t <TAP line>                            each failure ("not ok" without # TODO)
#   NOK LABEL dir/NN.t incomplete rc=RC missing=N            a file that stopped early
#   PJDTOTAL LABEL pass fail todo skip missing secs
# "fail" leaves out the suite's own "# TODO" tests (expected failures on Linux).
P=/extra/pjdfstest
T=$P/tests
TO=${PJD_TIMEOUT:-900}
export PATH=$P/bin:$PATH
label=$1
base=$2
shift 2
umask 022
work=$base/pjdwork.$label.$$
mkdir -p "$work" && chmod 755 "$work" || { echo "NOK $label setup cannot create $work"; exit 1; }
res=/tmp/pjdres.$label.$$
mkdir -p $res
tp=0; tf=0; tt=0; ts=0; tm=0; t0=$(date +%s)
for item in "$@"; do
	case $item in
	*.t) files=$T/$item ;;
	*) files=$(ls $T/$item/*.t) ;;
	esac
	for t in $files; do
		d=$(basename "$(dirname "$t")")
		n=$d/$(basename "$t")
		mkdir -p "$work/$d" && chmod 755 "$work/$d"
		o=$res/$d.$(basename "$t").out
		s0=$(date +%s)
		(cd "$work/$d" && timeout "$TO" sh "$t") >"$o" 2>&1 </dev/null
		rc=$?
		s1=$(date +%s)
		plan=$(sed -n 's/^1\.\.\([0-9][0-9]*\).*/\1/p' "$o" | head -1)
		plan=${plan:-0}
		pass=$(grep -c '^ok ' "$o")
		todo=$(grep -c '^not ok .*# TODO' "$o")
		fail=$(($(grep -c '^not ok ' "$o") - todo))
		skip=$(grep -c '^ok .*# SKIP' "$o")
		miss=0
		[ "$plan" -gt $((pass + fail + todo)) ] && miss=$((plan - pass - fail - todo))
		echo "PJDT $label $n $pass $fail $todo $skip $plan $rc $((s1 - s0))"
		grep '^not ok ' "$o" | grep -v '# TODO' | sed "s|^|NOK $label $n |"
		if [ $miss -gt 0 ] || [ $rc -ne 0 ]; then
			echo "NOK $label $n incomplete rc=$rc missing=$miss"
			grep -v '^ok \|^not ok \|^1\.\.' "$o" | tail -5 | sed "s|^|NOTE $label $n |"
		fi
		tp=$((tp + pass)); tf=$((tf + fail)); tt=$((tt + todo)); ts=$((ts + skip)); tm=$((tm + miss))
	done
done
echo "PJDTOTAL $label $tp $tf $tt $ts $tm $(($(date +%s) - t0))"
