#!/bin/sh
# Run the kernel's HMM selftest (hmm-tests) with both device halves, leaving
# out only the cases listed below for the running kernel, each with its
# reason.  Every exclusion is printed ("# p2plab: excluded ..."), counted
# ("# p2plab: N excluded"), and checked by tests/integration/test_hmm_selftest.py,
# so one that upstream fixes, or a new one, is noticed.
#
# kselftest_harness takes the first filter that matches a test: "-r F.V.T"
# keeps a case by its full name, "-T T" drops a test name in every variant,
# and "-f F" keeps the rest of a fixture.  Leaving out one variant's case is
# therefore "-r" for the variant kept, then "-T".

set -u
release=$(uname -r)
excluded=""
n=0

exclude() {  # FIXTURE.VARIANT.TEST REASON
	echo "# p2plab: excluded $1 on $release: $2"
	excluded="$excluded $1"
	n=$((n + 1))
}

case $release in
7.*)
	# The new THP cases (2025) assume device memory grows chunk by chunk,
	# as DEVICE_PRIVATE's does; test_hmm maps DEVICE_COHERENT memory as a
	# single fixed 256 MiB range (spm_addr_devN), so the 256 MiB case
	# cannot fit and a second chunk trips memremap_pages' "Conflicting
	# mapping in same section" WARN.
	exclude hmm.hmm_device_coherent.benchmark_thp_migration \
		"needs more than test_hmm's one 256 MiB DEVICE_COHERENT chunk"
	# Faulting a device-coherent THP back with HMM_DMIRROR_FLAG_FAIL_ALLOC
	# returns -ENOMEM instead of falling back to base pages, as the
	# device-private variant does (hmm-tests.c: migrate_anon_huge_err).
	exclude hmm.hmm_device_coherent.migrate_anon_huge_err \
		"device-coherent THP fault-back under forced allocation failure gives -ENOMEM"
	# The debug flavour (lockdep, KASAN, kmemleak: /proc/lockdep exists) runs
	# many times slower under TCG; this case is a benchmark with a fixed
	# 120 s harness timeout (TEST_F_TIMEOUT) that it cannot meet there.
	if [ -e /proc/lockdep ]; then
		exclude hmm.hmm_device_private.benchmark_thp_migration \
			"a benchmark with a fixed 120 s timeout, too short for the debug kernel under TCG"
	fi
	;;
esac
echo "# p2plab: $n excluded"
[ "$n" -eq 0 ] && exec /usr/bin/hmm-tests

args=""
for name in $excluded; do
	test=${name##*.}
	case " $args " in *" -T $test "*) continue ;; esac
	for variant in hmm_device_private hmm_device_coherent; do
		case " $excluded " in *" hmm.$variant.$test "*) ;; *) args="$args -r hmm.$variant.$test" ;; esac
	done
	args="$args -T $test"
done
# shellcheck disable=SC2086  # $args is a list of options, split on purpose
exec /usr/bin/hmm-tests $args -f hmm -f hmm2
