"""Cryptographic primitives behind small interfaces.

``ed25519``: account keys (transactions). ``bls``: validator keys (sortition, votes,
certificates). Every BLS call goes through :mod:`accord.base.crypto.bls` so that the backend can be
replaced when blspy stops publishing wheels.
"""
