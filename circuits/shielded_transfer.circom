pragma circom 2.1.0;

// Accord shielded transfer: a 2-input, 2-output JoinSplit over notes that a regulator can audit.
//
// A note is (value, owner, rho, r); its commitment is Poseidon(value, owner, rho, r) and it sits
// as a leaf of a Poseidon Merkle tree of depth `depth` (32 in production; tests use less).
// The spender knows a spending key sk; owner = Poseidon(sk) and each spent note publishes its
// nullifier Poseidon(sk, rho), so a note can be spent once without saying which one it was.
// Output notes get rho_j = Poseidon(nf0, nf1, j): unique because nullifiers are, which stops a
// sender from creating two notes that would share one nullifier.
//
// Regulator: the transfer's sender (owner key), both receivers and both output values are
// encrypted to the regulator's BabyJubJub key R inside the circuit: ephemeral scalar e,
// E = e*Base8, shared point S = e*R, ciphertext c_i = m_i + pad_i where pad_1..pad_5 are
// lanes 1..5 of the Poseidon permutation (width 6) of (0; Sx, Sy, PAD_TAG, 0, 0): a sponge
// keyed by S and squeezed once, its capacity lane 0 kept secret. A guessed plaintext thus
// gives an observer five of six lanes: to run the public permutation backwards and check the
// guess they would need the sixth, a full field element. (Version 1 published all five lanes
// of a width-5 permutation of (0, Sx, Sy, 5, 0), capacity included: inverting c - guess showed
// at once whether the guess was right.) The proof shows the ciphertext is right, so
// validators accept only transfers the regulator can read, and the regulator never takes part
// in validation. R must be a non-zero subgroup point: the contract compares it with the key
// registered in genesis, which is checked when genesis is made. E must not be the identity:
// e = 0 mod l (0, l, 2l, ...) would make S the identity and every pad a public constant; E is
// a multiple of Base8, so E.x = 0 exactly when E is the identity, and the circuit requires
// E.x to be invertible (the contract refuses E.x = 0 as well, before the proof).
//
// The two spent notes must differ: their nullifiers are required to be unequal (the pool
// checks it too), so a circuit user without that contract check cannot count one note twice.
//
// Public inputs (in this order): root, nullifier[2], commitment[2], deposit, withdrawal, bind,
// regulator[2], ephemeral[2], ciphertext[5]. `bind` ties the proof to its transaction (the
// contract derives it from the withdrawal recipient and the recipients' note ciphertexts), so a
// proof replayed with any other public input fails.

include "poseidon.circom";
include "bitify.circom";
include "escalarmulany.circom";
include "escalarmulfix.circom";
include "switcher.circom";

template MerkleRoot(depth) {
    signal input leaf;
    signal input pathElements[depth];
    signal input pathIndices[depth];   // 0: we are the left child, 1: the right child
    signal output root;

    component sw[depth];
    component h[depth];
    signal level[depth + 1];
    level[0] <== leaf;
    for (var i = 0; i < depth; i++) {
        pathIndices[i] * (1 - pathIndices[i]) === 0;
        sw[i] = Switcher();
        sw[i].sel <== pathIndices[i];
        sw[i].L <== level[i];
        sw[i].R <== pathElements[i];
        h[i] = Poseidon(2);
        h[i].inputs[0] <== sw[i].outL;
        h[i].inputs[1] <== sw[i].outR;
        level[i + 1] <== h[i].out;
    }
    root <== level[depth];
}

template ShieldedTransfer(depth) {
    // ---- public ----
    signal input root;
    signal input nullifier[2];
    signal input commitment[2];
    signal input deposit;
    signal input withdrawal;
    signal input bind;
    signal input regulator[2];
    signal input ephemeral[2];
    signal input ciphertext[5];

    // ---- private ----
    signal input sk;
    signal input inValue[2];
    signal input inRho[2];
    signal input inR[2];
    signal input pathElements[2][depth];
    signal input pathIndices[2][depth];
    signal input outValue[2];
    signal input outOwner[2];
    signal input outR[2];
    signal input e;

    // Owner key of the spender.
    component ownerH = Poseidon(1);
    ownerH.inputs[0] <== sk;
    signal owner <== ownerH.out;

    component inCm[2];
    component nf[2];
    component tree[2];
    component inBits[2];
    for (var k = 0; k < 2; k++) {
        inBits[k] = Num2Bits(64);
        inBits[k].in <== inValue[k];

        inCm[k] = Poseidon(4);
        inCm[k].inputs[0] <== inValue[k];
        inCm[k].inputs[1] <== owner;
        inCm[k].inputs[2] <== inRho[k];
        inCm[k].inputs[3] <== inR[k];

        tree[k] = MerkleRoot(depth);
        tree[k].leaf <== inCm[k].out;
        for (var i = 0; i < depth; i++) {
            tree[k].pathElements[i] <== pathElements[k][i];
            tree[k].pathIndices[i] <== pathIndices[k][i];
        }
        // A zero-value (dummy) input needs no membership: it cannot create value.
        (tree[k].root - root) * inValue[k] === 0;

        nf[k] = Poseidon(2);
        nf[k].inputs[0] <== sk;
        nf[k].inputs[1] <== inRho[k];
        nf[k].out === nullifier[k];
    }
    // Two different notes: nullifier[0] - nullifier[1] has an inverse.
    signal nfDiffInv;
    nfDiffInv <-- 1 / (nullifier[0] - nullifier[1]);
    nfDiffInv * (nullifier[0] - nullifier[1]) === 1;

    component outRho[2];
    component outCm[2];
    component outBits[2];
    for (var j = 0; j < 2; j++) {
        outBits[j] = Num2Bits(64);
        outBits[j].in <== outValue[j];

        outRho[j] = Poseidon(3);
        outRho[j].inputs[0] <== nullifier[0];
        outRho[j].inputs[1] <== nullifier[1];
        outRho[j].inputs[2] <== j;

        outCm[j] = Poseidon(4);
        outCm[j].inputs[0] <== outValue[j];
        outCm[j].inputs[1] <== outOwner[j];
        outCm[j].inputs[2] <== outRho[j].out;
        outCm[j].inputs[3] <== outR[j];
        outCm[j].out === commitment[j];
    }

    // Value conservation. Every term is below 2^64, so no sum can wrap around the field.
    component depBits = Num2Bits(64);
    depBits.in <== deposit;
    component wdBits = Num2Bits(64);
    wdBits.in <== withdrawal;
    inValue[0] + inValue[1] + deposit === outValue[0] + outValue[1] + withdrawal;

    // Bind the proof to its transaction (a quadratic constraint keeps the input in the proof).
    signal bindSq <== bind * bind;

    // ---- encryption to the regulator ----
    var BASE8[2] = [
        5299619240641551281634865583518297030282874472190772894086521144482721001553,
        16950150798460657717958625567821834550301663161624707787222815936182638968203
    ];
    component eBits = Num2Bits(253);
    eBits.in <== e;
    component ephMul = EscalarMulFix(253, BASE8);
    component shared = EscalarMulAny(253);
    for (var i = 0; i < 253; i++) {
        ephMul.e[i] <== eBits.out[i];
        shared.e[i] <== eBits.out[i];
    }
    ephMul.out[0] === ephemeral[0];
    ephMul.out[1] === ephemeral[1];
    // E is not the identity (see the header): its x coordinate has an inverse.
    signal ephXInv;
    ephXInv <-- 1 / ephemeral[0];
    ephXInv * ephemeral[0] === 1;
    shared.p[0] <== regulator[0];
    shared.p[1] <== regulator[1];

    signal plain[5];
    plain[0] <== owner;
    plain[1] <== outOwner[0];
    plain[2] <== outValue[0];
    plain[3] <== outOwner[1];
    plain[4] <== outValue[1];
    // The pads are the five rate lanes of ONE Poseidon permutation (width 6) of
    // (0; Sx, Sy, PAD_TAG, 0, 0); lane 0, the capacity, is never published (see the header).
    // PAD_TAG is "accord/regulator-pad/v2" as a big-endian integer.
    var PAD_TAG = 9327939838907049254746946635702851409804865328303273522;
    component pad = PoseidonEx(5, 6);
    pad.initialState <== 0;
    pad.inputs[0] <== shared.out[0];
    pad.inputs[1] <== shared.out[1];
    pad.inputs[2] <== PAD_TAG;
    pad.inputs[3] <== 0;
    pad.inputs[4] <== 0;
    for (var i = 0; i < 5; i++) {
        ciphertext[i] === plain[i] + pad.out[i + 1];
    }
}
