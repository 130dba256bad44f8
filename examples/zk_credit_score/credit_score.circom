pragma circom 2.1.0;

// A lender's own circuit: "my committed credit score is at least the threshold".
//
// The borrower's score sits in a commitment Poseidon(score, salt) that a credit bureau signed
// or published earlier; the proof shows the committed score is >= threshold without revealing
// it. Public inputs: commitment, threshold.

include "poseidon.circom";
include "comparators.circom";

template CreditScoreAtLeast() {
    signal input commitment;
    signal input threshold;
    signal input score;
    signal input salt;

    component h = Poseidon(2);
    h.inputs[0] <== score;
    h.inputs[1] <== salt;
    h.out === commitment;

    // Both operands range-checked to 16 bits, so the comparison is sound.
    component ge = GreaterEqThan(16);
    component sBits = Num2Bits(16);
    sBits.in <== score;
    component tBits = Num2Bits(16);
    tBits.in <== threshold;
    ge.in[0] <== score;
    ge.in[1] <== threshold;
    ge.out === 1;
}

component main {public [commitment, threshold]} = CreditScoreAtLeast();
