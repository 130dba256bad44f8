"""accord.zk."""
