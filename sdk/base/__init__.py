"""The base layer: values that are hashed or signed, and what every other layer shares.

Canonical encoding (``encoding``, the one module that knows MessagePack), the chain's types
(``types``), errors, Merkle trees and proofs (``merkle``), BLS and Ed25519 (``crypto``), key
files (``keys``), the genesis document (``genesis``), the HTTP API's JSON shapes (``wire``) and
a small metrics registry (``metrics``). Nothing here imports from a layer above it, so a client
or a light client can load the base layer alone.
"""
