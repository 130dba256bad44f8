"""Benchmarks behind `accord bench ...`: each module has add_arguments(parser) and run(args) -> dict."""
