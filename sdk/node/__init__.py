"""accord.node: the embeddable validator (:class:`Node`) and its client API."""

from accord.node.collector import tune_collector
from accord.node.node import Node, Subscription

__all__ = ["Node", "Subscription", "tune_collector"]
