pragma circom 2.1.0;

// A lender's own circuit: "a credit bureau signed that my score is at least the threshold".
//
// The bureau (public key B on BabyJubJub, registered in genesis) signs, with EdDSA-Poseidon,
// the message Poseidon(SCORE_TAG, subject, score, epoch): subject is the borrower's account
// address as a number, epoch the period the score is current for. The proof shows such a
// signature exists for a score >= threshold, revealing neither the score nor the signature.
//
// Public inputs (in this order): bureau[2], threshold, subject, epoch, bind. The contract sets
// subject from the transaction's sender, so a proof only ever registers the account the bureau
// scored (a replay by anyone else fails), and bind from the chain id, so it cannot be replayed
// on another chain. A borrower without a bureau signature has no proof: the score is the
// bureau's, not the borrower's own commitment.

include "poseidon.circom";
include "comparators.circom";
include "eddsaposeidon.circom";

template CreditScoreAtLeast() {
    signal input bureau[2];
    signal input threshold;
    signal input subject;
    signal input epoch;
    signal input bind;

    signal input score;
    signal input sigS;
    signal input sigR8[2];

    // SCORE_TAG: "accord-example/credit-score/v1" as a big-endian integer.
    component msg = Poseidon(4);
    msg.inputs[0] <== 672148902122179013880564922208437081183845620800161263410278830433072689;
    msg.inputs[1] <== subject;
    msg.inputs[2] <== score;
    msg.inputs[3] <== epoch;

    component sig = EdDSAPoseidonVerifier();
    sig.enabled <== 1;
    sig.Ax <== bureau[0];
    sig.Ay <== bureau[1];
    sig.S <== sigS;
    sig.R8x <== sigR8[0];
    sig.R8y <== sigR8[1];
    sig.M <== msg.out;

    // Both operands range-checked to 16 bits, so the comparison is sound.
    component ge = GreaterEqThan(16);
    component sBits = Num2Bits(16);
    sBits.in <== score;
    component tBits = Num2Bits(16);
    tBits.in <== threshold;
    ge.in[0] <== score;
    ge.in[1] <== threshold;
    ge.out === 1;

    signal bindSq <== bind * bind;
}

component main {public [bureau, threshold, subject, epoch, bind]} = CreditScoreAtLeast();
