"""Structured fuzzing of the p2plab device models over qtest (``python -m fuzz``).

See docs/fuzzing.md.  A campaign boots QEMU with one device under the qtest
accelerator, sets the device up the way a driver would, then sends seeded,
structured hostile input: register and config-space writes, ring, queue and
translation-list contents in guest memory, commands and work requests biased
toward limits and wrap-around, FLR, ReBAR writes, frames from a link peer, QOM
fault injection and ``clock_step``.  Every line sent is kept as a trace, so a
crash is saved as a replayable reproducer and then minimised.
"""
