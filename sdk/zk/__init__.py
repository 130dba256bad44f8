"""accord.zk: circuits, ceremony, provers and verifiers for Accord's zero-knowledge contracts.

Modules (import what you need; nothing here starts Node.js by itself):

* :mod:`accord.zk.build` -- compile circom circuits into the cache (``accord zk build``);
* :mod:`accord.zk.ceremony` -- phase 1 + phase 2 with verified contributions and a beacon;
* :mod:`accord.zk.artifacts` -- build + ceremony for one circuit: its proving/verification keys;
* :mod:`accord.zk.poseidon`, :mod:`accord.zk.babyjub` -- circomlib-exact hashing, curve, EdDSA;
* :mod:`accord.zk.notes` -- wallet keys, notes, the commitment tree, the regulator cipher,
  transfer and anti-stacking witnesses;
* :mod:`accord.zk.prover` -- the long-lived snarkjs worker (prove, verify);
* :mod:`accord.zk.groth16`, :mod:`accord.zk.pairing` -- the pure-Python verifier;
* :mod:`accord.zk.verifier` -- ``PyProofVerifier`` / ``FastProofVerifier`` for the runtime;
* :mod:`accord.zk.audit` -- the regulator's audit of a chain.
"""
