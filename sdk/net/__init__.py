"""accord.net: the validator network (authenticated WebSocket mesh, gossip, back-pressure).

See :mod:`accord.net.transport` for the design; :mod:`accord.net.handshake` for the
handshake; :mod:`accord.net.frames` for frame kinds and their limits.
"""

from accord.net.frames import Kind, KindSpec, Overflow, decode_frame, encode_frame, kind_specs
from accord.net.transport import MessageHandler, NetConfig, PeerHandler, RequestHandler, Transport

__all__ = [
    "Kind",
    "KindSpec",
    "MessageHandler",
    "NetConfig",
    "Overflow",
    "PeerHandler",
    "RequestHandler",
    "Transport",
    "decode_frame",
    "encode_frame",
    "kind_specs",
]
