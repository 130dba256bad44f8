"""What tests share: demo genesis documents, in-process networks, a controlled router for the
consensus core, raw transport peers, the API test node. Test modules import from here only."""
