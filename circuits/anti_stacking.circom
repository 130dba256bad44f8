pragma circom 2.1.0;

// Accord anti-stacking proof: a borrower shows that the sum of their balances at n lenders is
// below a public limit, revealing nothing else.
//
// Each lender i (public key A_i on BabyJubJub) signs the attestation message
// Poseidon(ATTEST_TAG, borrower, balance_i, epoch) with EdDSA-Poseidon (the tag keeps a
// signature on any other Poseidon message of a lender's key from passing as an attestation). The proof shows every signature
// verifies under the public lender key of its slot and that sum(balance_i) < limit. A
// consortium with fewer than n lenders fills the remaining slots with a public "null lender"
// key whose secret is known to all: the borrower can sign any balance for it, but a larger
// balance only makes the sum larger, so the honest value 0 is the only useful one.
//
// Public inputs (in this order): limit, borrower, epoch, lenderKey[n][2], bind. `bind` ties
// the proof to the one loan it was made for: the contract derives it from the chain id, the
// applying lender's account, the borrower, the amount and the epoch, so a proof cannot be
// front-run by another caller or replayed for another amount, lender or chain.

include "poseidon.circom";
include "bitify.circom";
include "comparators.circom";
include "eddsaposeidon.circom";

template AntiStacking(n) {
    signal input limit;
    signal input borrower;
    signal input epoch;
    signal input lenderKey[n][2];
    signal input bind;

    signal input balance[n];
    signal input sigS[n];
    signal input sigR8[n][2];

    component bits[n];
    component msg[n];
    component sig[n];
    var total = 0;
    for (var i = 0; i < n; i++) {
        bits[i] = Num2Bits(64);
        bits[i].in <== balance[i];
        total += balance[i];

        // ATTEST_TAG: "accord/attestation/v2" as a big-endian integer.
        msg[i] = Poseidon(4);
        msg[i].inputs[0] <== 142333066389572894778872948701489658421583685842482;
        msg[i].inputs[1] <== borrower;
        msg[i].inputs[2] <== balance[i];
        msg[i].inputs[3] <== epoch;

        sig[i] = EdDSAPoseidonVerifier();
        sig[i].enabled <== 1;
        sig[i].Ax <== lenderKey[i][0];
        sig[i].Ay <== lenderKey[i][1];
        sig[i].S <== sigS[i];
        sig[i].R8x <== sigR8[i][0];
        sig[i].R8y <== sigR8[i][1];
        sig[i].M <== msg[i].out;
    }

    // LessThan(k) is sound only for operands below 2^k: the sum of n 64-bit balances is below
    // 2^(64 + log2 n) and the limit is range-checked to 64 bits.
    component limitBits = Num2Bits(64);
    limitBits.in <== limit;
    component lt = LessThan(72);
    lt.in[0] <== total;
    lt.in[1] <== limit;
    lt.out === 1;

    // Keep `bind` in the proof (a quadratic constraint on it).
    signal bindSq <== bind * bind;
}
