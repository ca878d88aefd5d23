#!/bin/sh
# Run the kernel's HMM selftest (hmm-tests) with both device halves, leaving
# out only the cases listed below for the running kernel, each with its
# reason.  Every exclusion is printed ("# p2plab: excluded ..."), counted
# ("# p2plab: N excluded"), and checked by tests/integration/test_hmm_selftest.py,
# so one that upstream fixes, or a new one, is noticed.
#
# kselftest_harness takes the first filter that matches a test: "-r F.V.T"
# keeps a case by its full name, "-T T" drops a test name in every variant,
# and "-f F" keeps the rest of a fixture.  An exclusion of one variant's case
# is therefore "-r" for the other variant, then "-T".

set -u
release=$(uname -r)
args=""
n=0

exclude() {  # VARIANT-TO-KEEP TEST REASON
	echo "# p2plab: excluded hmm.hmm_device_coherent.$2 on $release: $3"
	args="$args -r hmm.$1.$2 -T $2"
	n=$((n + 1))
}

case $release in
7.*)
	# The new THP cases (2025) assume device memory grows chunk by chunk,
	# as DEVICE_PRIVATE's does; test_hmm maps DEVICE_COHERENT memory as a
	# single fixed 256 MiB range (spm_addr_devN), so the 256 MiB case
	# cannot fit and a second chunk trips memremap_pages' "Conflicting
	# mapping in same section" WARN.
	exclude hmm_device_private benchmark_thp_migration \
		"needs more than test_hmm's one 256 MiB DEVICE_COHERENT chunk"
	# Faulting a device-coherent THP back with HMM_DMIRROR_FLAG_FAIL_ALLOC
	# returns -ENOMEM instead of falling back to base pages, as the
	# device-private variant does (hmm-tests.c: migrate_anon_huge_err).
	exclude hmm_device_private migrate_anon_huge_err \
		"device-coherent THP fault-back under forced allocation failure gives -ENOMEM"
	;;
esac
echo "# p2plab: $n excluded"
[ "$n" -eq 0 ] && exec /usr/bin/hmm-tests
# shellcheck disable=SC2086  # $args is a list of options, split on purpose
exec /usr/bin/hmm-tests $args -f hmm -f hmm2
